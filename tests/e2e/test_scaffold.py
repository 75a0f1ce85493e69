"""taskbert init (starter specs) and taskbert new-plugin (a package that installs and passes)."""

import dataclasses
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Literal

import pytest
import yaml
from click.testing import CliRunner

import taskbert
from taskbert.plugins import manager as plugin_mod
from taskbert.cli import cli
from taskbert.config.spec import DataSpec, EncoderSpec, TrainSpec
from taskbert.testing import write_polarity_data


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_init_lists_every_key_with_its_help_and_validates(tmp_path, tiny_encoder):
    out = tmp_path / "spec.yaml"
    result = invoke("init", "--task", "sentence_classification", "-o", out)
    assert result.exit_code == 0, result.output
    text = out.read_text()
    raw = yaml.safe_load(text)
    assert raw["task"] == "sentence_classification"
    for section, cls in (("encoder", EncoderSpec), ("data", DataSpec), ("train", TrainSpec)):
        assert list(raw[section]) == [f.name for f in dataclasses.fields(cls)], section
    assert raw["train"]["lr"] == 5e-5 and raw["train"]["loggers"] == ["console"]
    assert raw["task_options"]["metrics"] == ["accuracy", "macro_f1"]
    # the help of the task's Options fields and of the spec's fields become comments
    assert "# record field holding the label" in text and "# tokens per input window" in text
    assert "# any of: console, csv, tensorboard" in text
    train = write_polarity_data(tmp_path / "train.jsonl", 20, 1)
    dev = write_polarity_data(tmp_path / "dev.jsonl", 10, 2)
    result = invoke("validate", out, "--set", f"encoder.model={tiny_encoder}", "--set", f"data.train={train}",
                    "--set", f"data.validation={dev}", "--set", "encoder.max_length=32")
    assert result.exit_code == 0, result.output
    assert invoke("init", "--task", "sentence_classification", "-o", out).exit_code == 2  # no --force
    assert invoke("init", "--task", "sentence_classification", "-o", out, "--force").exit_code == 0


def test_init_unknown_task_lists_the_known_ones():
    result = invoke("init", "--task", "sentence_clasification")
    assert result.exit_code == 2
    assert "unknown task 'sentence_clasification' (did you mean 'sentence_classification'?)" in result.output


@dataclass(frozen=True)
class NeedsVocab:
    vocabulary: str = field(metadata={"help": "path of the vocabulary file"})
    mode: Literal["fast", "exact"] = "fast"


class VocabTask(taskbert.Task):
    name = "vocab_task"
    description = "a task with a required option"
    Options = NeedsVocab


class VocabPlugin:
    @staticmethod
    @taskbert.hookimpl
    def taskbert_register_tasks(register):
        register(VocabTask)


def test_init_marks_required_options_of_a_plugin_task():
    plugin_mod.reset()
    plugin_mod.get_plugin_manager().register(VocabPlugin, name="vocab-plugin")
    try:
        result = invoke("init", "--task", "vocab_task")
        assert result.exit_code == 0, result.output
        assert "# A starter spec for task 'vocab_task' (vocab-plugin):" in result.output
        lines = {ln.split(":")[0].strip(): ln for ln in result.output.splitlines() if ":" in ln}
        assert "vocabulary: null" in lines["vocabulary"]
        assert "# REQUIRED: path of the vocabulary file" in lines["vocabulary"]
        assert "one of 'fast', 'exact'" in lines["mode"]
    finally:
        plugin_mod.reset()


def test_new_plugin_refuses_bad_names_and_full_folders(tmp_path):
    result = invoke("new-plugin", "Bad Name!", "-o", tmp_path)
    assert result.exit_code == 2 and "is not a valid name" in result.output
    assert invoke("new-plugin", "ok-name", "-o", tmp_path).exit_code == 0
    result = invoke("new-plugin", "ok-name", "-o", tmp_path)
    assert result.exit_code == 2 and "is not empty" in result.output
    # a built-in task's name: installed, the duplicate would stop every command
    result = invoke("new-plugin", "sentence-classification", "-o", tmp_path)
    assert result.exit_code == 2 and "task 'sentence_classification' is already registered" in result.output
    assert not (tmp_path / "taskbert-sentence-classification").exists()


@pytest.fixture()
def installed_plugin(tmp_path):
    """Scaffold a plugin, pip-install it (found through its entry point), uninstall after."""
    result = invoke("new-plugin", "scaffold-demo", "-o", tmp_path)
    assert result.exit_code == 0, result.output
    root = tmp_path / "taskbert-scaffold-demo"
    files = {os.path.relpath(p, root) for p in result.stdout.splitlines()}
    assert files == {"pyproject.toml", "README.md", "taskbert_scaffold_demo/__init__.py", "tests/test_plugin.py"}
    assert 'scaffold_demo = "taskbert_scaffold_demo"' in (root / "pyproject.toml").read_text()
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(root)],
                   check=True)
    plugin_mod.reset()
    try:
        yield root
    finally:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-q", "-y", "taskbert-scaffold-demo"], check=True)
        plugin_mod.reset()


def test_scaffolded_plugin_installs_and_its_tests_pass(installed_plugin, tiny_encoder, tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                          cwd=installed_plugin, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 passed" in proc.stdout

    # in this process too: listed by `taskbert tasks`, and init writes a spec for it
    assert "scaffold_demo" in invoke("tasks").output
    spec = tmp_path / "demo.yaml"
    assert invoke("init", "--task", "scaffold_demo", "-o", spec).exit_code == 0
    assert "# record field holding the text" in spec.read_text()
    train = write_polarity_data(tmp_path / "train.jsonl", 20, 1)
    result = invoke("validate", spec, "--set", f"encoder.model={tiny_encoder}", "--set", f"data.train={train}",
                    "--set", "data.validation=null", "--set", "encoder.max_length=32")
    assert result.exit_code == 0, result.output
    # a model trained on another text field predicts from plain text (record_from_text)
    rows = [json.loads(line) for line in open(train, encoding="utf-8")]
    renamed = tmp_path / "renamed.jsonl"
    renamed.write_text("".join(json.dumps({"sentence": r["text"], "label": r["label"]}) + "\n" for r in rows))
    result = invoke("run", spec, "--set", f"encoder.model={tiny_encoder}", "--set", f"data.train={renamed}",
                    "--set", "data.validation=null", "--set", "encoder.max_length=32",
                    "--set", "task_options.text_field=sentence", "--set", "train.max_steps=2",
                    "--set", f"output={tmp_path / 'run'}", "--set", "train.loggers=[]")
    assert result.exit_code == 0, result.output
    texts = tmp_path / "new.txt"
    texts.write_text("a good film\na bad film\n")
    result = invoke("predict", tmp_path / "run", texts, "-o", tmp_path / "pred.jsonl")
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "pred.jsonl").read_text().splitlines()) == 2
