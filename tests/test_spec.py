"""Spec checking: one line naming the file and key, exit 2, nothing written."""

import os

import pytest
import yaml
from click.testing import CliRunner

from taskbert import SpecError
from taskbert.cli import cli
from taskbert.spec import load_spec


def write(tmp_path, spec, name="spec.yaml"):
    path = tmp_path / name
    path.write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec))
    return str(path)


def test_relative_paths_resolve_against_spec_folder(tmp_path, sentiment_data, tiny_encoder):
    sub = tmp_path / "specs"
    sub.mkdir()
    path = write(sub, {"task": "sentence_classification", "encoder": {"model": tiny_encoder},
                       "data": {"train": "../train.jsonl"}, "train": {"lr": "3e-5"}})
    spec = load_spec(path)
    assert spec.data.train == str(tmp_path / "train.jsonl")
    assert spec.output == str(sub / "runs" / "spec")
    assert spec.train.lr == 3e-5
    with pytest.raises(Exception):
        spec.train.lr = 1  # frozen


def test_overrides(tmp_path, sentiment_data):
    path = write(tmp_path, {"task": "sentence_classification", "data": {"train": "train.jsonl"}})
    spec = load_spec(path, ["train.batch_size=8", "task_options.text_field=body", "train.eval_every=20"])
    assert spec.train.batch_size == 8 and spec.options.text_field == "body" and spec.train.eval_every == 20
    with pytest.raises(SpecError, match="not key=value"):
        load_spec(path, ["train.batch_size"])


BAD = [
    ("task: x\ntrain:\n  lr: 1\n bad: 2\n", "line 4, column 2: malformed YAML"),
    ("task: sentence_classificaton\n", "did you mean 'sentence_classification'"),
    ({"task": "sentence_classification", "trian": {}}, "unknown key 'trian' (did you mean 'train'?)"),
    ({"task": "sentence_classification", "train": {"lr": -1}}, "train.lr: -1.0 is out of range; must be > 0"),
    ({"task": "sentence_classification", "train": {"batch_size": 0}}, "train.batch_size: 0 is out of range"),
    ({"task": "sentence_classification", "train": {"epochs": "many"}}, "train.epochs: expected a number"),
    ({"task": "sentence_classification", "train": {"precision": "fp8"}}, "'fp8' is not allowed"),
    ({"task": "sentence_classification", "task_options": {"text_feild": "t"}}, "did you mean 'text_field'"),
    ({"task": "sentence_classification", "data": {"format": "xml"}}, "unknown reader 'xml'"),
    ({"encoder": {"model": "x"}}, "missing required key 'task'"),
    ("- a\n- b\n", "top level must be a mapping"),
    ("", "the spec is empty"),
]


@pytest.mark.parametrize("spec,message", BAD)
def test_bad_specs_fail_with_one_line(tmp_path, spec, message):
    path = write(tmp_path, spec)
    result = CliRunner().invoke(cli, ["validate", path])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and str(tmp_path) in lines[0], lines
    assert "Traceback" not in result.output


def test_data_errors_before_weights_and_nothing_written(tmp_path, tiny_encoder, sentiment_data):
    train, _ = sentiment_data
    (tmp_path / "dev.jsonl").write_text('{"text": "a", "label": "pos"}\n{"text": "b", "label": "meh"}\n')
    (tmp_path / "bad.jsonl").write_text('{"text": "a", "label": "pos"}\n{"text": "b" "label"}\n')
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "latin1.jsonl").write_bytes('{"text": "caf\xe9", "label": "pos"}\n'.encode("latin-1"))
    cases = [
        ("dev.jsonl", "dev.jsonl:2: label 'meh' is not in the training data"),
        ("bad.jsonl", "bad.jsonl:2: invalid JSON"),
        ("empty.jsonl", "empty.jsonl is empty"),
        ("missing.jsonl", "file not found"),
        ("latin1.jsonl", "latin1.jsonl:1: not valid utf-8"),
    ]
    for name, message in cases:
        out = tmp_path / f"run-{name}"
        path = write(tmp_path, {"task": "sentence_classification",
                                "encoder": {"model": tiny_encoder, "max_length": 32},
                                "data": {"train": train, "validation": name}, "output": str(out)})
        result = CliRunner().invoke(cli, ["run", path])
        assert result.exit_code == 2, (name, result.output)
        assert message in result.stderr, (name, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
        assert not out.exists()


def test_encoder_checks(tmp_path, tiny_encoder, sentiment_data):
    train, _ = sentiment_data
    no_tok = tmp_path / "enc-no-tok"
    no_tok.mkdir()
    (no_tok / "config.json").write_text(open(os.path.join(tiny_encoder, "config.json")).read())
    cases = [
        ({"model": tiny_encoder, "max_length": 4096}, "exceeds the model's 128 positions"),
        ({"model": str(no_tok)}, "has no tokenizer"),
        ({"model": "./no/such/folder"}, "model folder not found"),
    ]
    for encoder, message in cases:
        path = write(tmp_path, {"task": "sentence_classification", "encoder": encoder,
                                "data": {"train": train}})
        result = CliRunner().invoke(cli, ["validate", path])
        assert result.exit_code == 2 and message in result.stderr, result.output


def test_validate_ok(tmp_path, tiny_encoder, sentiment_data):
    train, dev = sentiment_data
    path = write(tmp_path, {"task": "sentence_classification", "encoder": {"model": tiny_encoder},
                            "data": {"train": train, "validation": dev}})
    result = CliRunner().invoke(cli, ["validate", path])
    assert result.exit_code == 0 and "train 400, validation 100" in result.output
