"""End to end: heads train on cached frozen features; the encoder runs only to fill the
cache (counted), predictions match, and ``taskbert extract`` works from the command line."""

import json
import os
import random

import click
import pytest
import torch
import yaml
from click.testing import CliRunner

from taskbert.plugins.hookspecs import hookimpl
from taskbert.testing import make_tiny_encoder, run_spec

from taskbert.testing import FILLER
from taskbert.testing import NEGATIVE as NEG
from taskbert.testing import POSITIVE as POS

NOUNS = "cat dog house tree car".split()
AMBIGUOUS = "run walk talk".split()   # a noun after "the", a verb after a noun


@pytest.fixture(scope="module")
def tiny4(tmp_path_factory):
    words = POS + NEG + FILLER + NOUNS + AMBIGUOUS + ["the"]
    return make_tiny_encoder(str(tmp_path_factory.mktemp("enc4")), words, layers=4)


@pytest.fixture()
def count_encoder_calls(monkeypatch):
    """Count every forward call of any BertModel (the encoder) in this test."""
    from transformers import BertModel

    calls = []
    original = BertModel.forward

    def counted(self, *args, **kwargs):
        calls.append(kwargs.get("input_ids").shape[0])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(BertModel, "forward", counted)
    return calls


class EpochLog:
    """A test plugin: the number of encoder calls seen at every evaluation."""

    def __init__(self, calls):
        self.calls, self.at_eval = calls, []

    @hookimpl
    def taskbert_log_metrics(self, trainer, step, metrics):
        if "validation/accuracy" in metrics and "epoch" in metrics:
            self.at_eval.append((metrics["epoch"], len(self.calls)))


def test_epochs_make_no_encoder_passes_and_cache_is_reused(tiny4, sentiment_data, tmp_path, count_encoder_calls):
    from taskbert.plugins import get_plugin_manager

    train, dev = sentiment_data
    spec = {"task": "feature_classification", "encoder": {"model": tiny4, "max_length": 32},
            "data": {"train": train, "validation": dev},
            "task_options": {"layers": "concat_last_four", "pooling": "mean", "head": "mlp",
                             "cache_dir": str(tmp_path / "cache"), "extract_batch_size": 64},
            "train": {"epochs": 10, "batch_size": 16, "lr": 3.0e-3, "log_every": 5, "seed": 3, "loggers": []},
            "output": str(tmp_path / "run")}
    log = EpochLog(count_encoder_calls)
    pm = get_plugin_manager()
    pm.register(log, name="epoch-log")
    try:
        metrics, run_dir = run_spec(spec, str(tmp_path))
        # one pass to fill the cache: 400 train + 100 dev rows in batches of 64
        assert count_encoder_calls == [64] * 6 + [16] + [64, 36]
        assert [e for e, _ in log.at_eval] == list(range(1, 11))
        assert {n for _, n in log.at_eval} == {9}   # no call during any epoch or evaluation
        history = [json.loads(x) for x in open(os.path.join(run_dir, "metrics.jsonl"))]
        losses = [h["train/loss"] for h in history if "train/loss" in h]
        assert losses[-1] < 0.8 * losses[0], losses
        assert metrics["validation/accuracy"] >= 0.75   # the labels are balanced: chance is 0.5
        stats = json.load(open(os.path.join(run_dir, "features.json")))
        assert stats["encoder_calls_during_training"] == 0 and stats["splits"]["train"]["shape"] == [400, 4, 32]
        # a second run finds the cache and never runs the encoder
        count_encoder_calls.clear()
        spec["output"] = str(tmp_path / "run2")
        again, run2 = run_spec(spec, str(tmp_path), name="spec2.yaml")
        assert count_encoder_calls == []
        assert json.load(open(os.path.join(run2, "features.json")))["splits"]["train"]["reused"]
        assert again["validation/accuracy"] == metrics["validation/accuracy"]
    finally:
        pm.unregister(name="epoch-log")


def write_ambiguous(path, n, seed):
    """Sentences of two-word blocks, 'the run' (DT NN) or 'cat run' (NN VB): an ambiguous
    word is a noun after 'the' and a verb after a noun. Its position says nothing (it is
    always second in its block); only the word before it does."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(n):
            words = []
            for _ in range(rng.randint(1, 7)):
                if rng.random() < 0.5:
                    words += [("the", "DT"), (rng.choice(AMBIGUOUS), "NN")]
                else:
                    words += [(rng.choice(NOUNS), "NN"), (rng.choice(AMBIGUOUS), "VB")]
            fh.write(" ".join(f"{w}/{t}" for w, t in words) + "\n")
    return str(path)


def test_bilstm_tagger_on_windows_learns_context_and_predict_matches(tiny4, tmp_path):
    from taskbert.cli import cli

    spec = {"task": "feature_tagging", "encoder": {"model": tiny4, "max_length": 12},
            "data": {"format": "wordtag", "train": write_ambiguous(tmp_path / "train.txt", 200, 1),
                     "validation": write_ambiguous(tmp_path / "dev.txt", 40, 2)},
            "task_options": {"scheme": "none", "layers": "scalar_mix", "pooling": "mean", "head": "bilstm",
                             "head_hidden": 16, "cache_dir": str(tmp_path / "cache")},
            "train": {"epochs": 6, "batch_size": 16, "lr": 1.0e-2, "seed": 3, "log_every": 10, "loggers": [],
                      "precision": "fp32"},  # predict runs fp32; auto is bf16 on a CPU with AMX
            "output": str(tmp_path / "run")}
    metrics, run_dir = run_spec(spec, str(tmp_path))
    preds = [json.loads(x) for x in open(os.path.join(run_dir, "predictions.jsonl"))]
    golds = [[w.rsplit("/", 1) for w in line.split()] for line in open(tmp_path / "dev.txt")]
    amb = [(p, g[1]) for pr, gs in zip(preds, golds) for p, g in zip(pr["tags"], gs) if g[0] in AMBIGUOUS]
    # the word alone gives NN or VB half the time; context must decide
    assert sum(p == g for p, g in amb) / len(amb) >= 0.9
    assert metrics["validation/accuracy"] >= 0.95
    stats = json.load(open(os.path.join(run_dir, "features.json")))
    assert stats["splits"]["train"]["rows"] > 200    # long sentences became windows
    assert len(stats["scalar_mix"]["weights"]) == 5
    # predict runs the frozen encoder on the fly: same tags, same scores as the cached run
    result = CliRunner().invoke(cli, ["predict", run_dir, str(tmp_path / "dev.txt"), "--format", "wordtag",
                                      "-o", str(tmp_path / "out.jsonl")])
    assert result.exit_code == 0, result.output
    ours = [json.loads(x) for x in open(tmp_path / "out.jsonl")]
    assert [p["tags"] for p in ours] == [p["tags"] for p in preds]
    assert max(abs(a - b) for p, q in zip(ours, preds) for a, b in zip(p["scores"], q["scores"])) < 1e-4


def test_extract_command(tiny4, sentiment_data, tmp_path):
    from taskbert_plugins import features

    group = click.Group()
    features.taskbert_register_commands(cli=group)
    train, dev = sentiment_data
    spec = {"task": "feature_classification", "encoder": {"model": tiny4, "max_length": 32},
            "data": {"train": train, "validation": dev},
            "task_options": {"layers": "last", "cache_dir": str(tmp_path / "cache")}}
    (tmp_path / "f.yaml").write_text(yaml.safe_dump(spec))
    runner = CliRunner()
    result = runner.invoke(group, ["extract", str(tmp_path / "f.yaml"), "--split", "validation",
                                   "--jsonl", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert list(stats) == ["validation"] and stats["validation"]["shape"] == [100, 1, 32]
    lines = [json.loads(x) for x in open(tmp_path / "out" / "validation.jsonl")]
    assert len(lines) == 100 and lines[0]["features"][0]["token"] == "[CLS]"
    assert [x["index"] for x in lines[0]["features"][0]["layers"]] == [-1]
    assert "extracted in" in result.stderr
    again = runner.invoke(group, ["extract", str(tmp_path / "f.yaml"), "--split", "validation"])
    assert json.loads(again.stdout)["validation"]["reused"] and "reused" in again.stderr
    spec["task"] = "sentence_classification"
    del spec["task_options"]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(spec))
    bad = runner.invoke(group, ["extract", str(tmp_path / "c.yaml")])
    assert bad.exit_code == 2
    assert "task: 'sentence_classification' has no frozen features to extract; use one of: " \
           "feature_classification, feature_tagging" in bad.stderr
