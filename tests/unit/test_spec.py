"""Spec checking: one line naming the file and key, exit 2, nothing written."""

import os

import pytest
import yaml
from click.testing import CliRunner

from taskbert import SpecError
from taskbert.cli import cli
from taskbert.config.spec import load_spec


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
        ({"model": tiny_encoder, "max_length": 4096}, "exceeds the 128 tokens the model's positions hold"),
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


def test_offline_a_hub_id_must_be_in_the_cache(tmp_path, sentiment_data, monkeypatch, tiny_encoder):
    """Offline (the tests run with HF_HUB_OFFLINE=1), ``validate`` refuses a hub id that is
    not in the local Hugging Face cache instead of saying ok, and accepts one that is (its
    config and tokenizer files; the weights are not read)."""
    import shutil

    from huggingface_hub import constants

    train, _ = sentiment_data
    cache = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    for model, message in (("nosuch-org/nosuch-model", "is not a local folder and not in the Hugging Face cache"),
                           ("bad id", "neither a local folder nor a valid Hugging Face model id")):
        path = write(tmp_path, {"task": "sentence_classification", "encoder": {"model": model},
                                "data": {"train": train}})
        result = CliRunner().invoke(cli, ["validate", path])
        assert result.exit_code == 2 and message in result.stderr, result.output
    snapshot = cache / "models--some-org--cached" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    for name in os.listdir(tiny_encoder):
        if not name.endswith(".safetensors"):
            shutil.copy(os.path.join(tiny_encoder, name), snapshot / name)
    (cache / "models--some-org--cached" / "refs").mkdir()
    (cache / "models--some-org--cached" / "refs" / "main").write_text("abc123")
    path = write(tmp_path, {"task": "sentence_classification", "encoder": {"model": "some-org/cached"},
                            "data": {"train": train}})
    result = CliRunner().invoke(cli, ["validate", path])
    assert result.exit_code == 0, result.output


def test_validate_checks_the_output_folder_as_run_does(tmp_path, tiny_encoder, sentiment_data):
    train, dev = sentiment_data
    a_file = tmp_path / "gen.py"
    a_file.write_text("print(1)\n")
    spec = {"task": "sentence_classification", "encoder": {"model": tiny_encoder},
            "data": {"train": train, "validation": dev}, "output": str(a_file)}
    result = CliRunner().invoke(cli, ["validate", write(tmp_path, spec)])
    assert result.exit_code == 2 and f"output: {a_file} is a file" in result.stderr, result.output
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    (earlier / "spec.yaml").write_text("task: x\n")   # an earlier run's resolved spec
    spec["output"] = str(earlier)
    result = CliRunner().invoke(cli, ["validate", write(tmp_path, spec)])
    assert result.exit_code == 0, result.output
    assert "already holds a run; taskbert run needs --resume" in result.stderr
    # a warning that quotes a path or data escapes what is not printable, as errors do
    odd = tmp_path / "ear\u202ely\nrun"
    odd.mkdir()
    (odd / "spec.yaml").write_text("task: x\n")
    spec["output"] = str(odd)
    result = CliRunner().invoke(cli, ["validate", write(tmp_path, spec)])
    assert result.exit_code == 0, result.output
    (warning,) = [ln for ln in result.stderr.splitlines() if ln.startswith("warning: output:")]
    assert warning.isprintable() and "ear\\u202ely\\nrun already holds a run" in warning, warning


def test_a_near_miss_of_a_packaged_alias_is_caught(tmp_path, sentiment_data):
    train, _ = sentiment_data
    path = write(tmp_path, {"task": "sentence_classification", "encoder": {"model": "minilm-l7"},
                            "data": {"train": train}})
    result = CliRunner().invoke(cli, ["validate", path])
    assert result.exit_code == 2 and "'minilm-l7' is not a packaged alias (did you mean 'minilm-l6'?)" \
        in result.stderr, result.output


@pytest.mark.parametrize("task, overrides, message", [
    ("sentence_classification", {"task_options": {"metrics": ["acuracy"]}},
     "task_options.metrics: unknown metric 'acuracy' (did you mean 'accuracy'?)"),
    ("sentence_classification", {"train": {"metric": "f1"}},
     "train.metric: 'f1' is not a validation metric of task 'sentence_classification' "
     "(did you mean 'macro_f1'?); allowed: loss, accuracy, macro_f1"),
    ("sentence_pair", {"task_options": {"objective": "regression"}, "train": {"metric": "accuracy"}},
     "train.metric: 'accuracy' is not a validation metric of task 'sentence_pair'"),
    ("token_classification", {"task_options": {"scheme": "none"}, "train": {"metric": "f1"}},
     "allowed: loss, accuracy"),
])
def test_metric_names_are_checked_before_training(tmp_path, tiny_encoder, sentiment_data, task, overrides,
                                                  message):
    """A misspelt metric used to surface only at the first evaluation, after an epoch of
    training, with a half-written run folder; now validate and run refuse it up front."""
    train, dev = sentiment_data
    spec = {"task": task, "encoder": {"model": tiny_encoder}, "data": {"train": train, "validation": dev},
            "output": str(tmp_path / "run"), **overrides}
    path = write(tmp_path, spec)
    for command in (["validate", path], ["run", path]):
        result = CliRunner().invoke(cli, command)
        assert result.exit_code == 2 and message in result.stderr, result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("metric", ["macro_f1", "validation/accuracy", "loss"])
def test_known_metrics_pass(tmp_path, tiny_encoder, sentiment_data, metric):
    train, dev = sentiment_data
    path = write(tmp_path, {"task": "sentence_classification", "encoder": {"model": tiny_encoder},
                            "data": {"train": train, "validation": dev}, "train": {"metric": metric}})
    result = CliRunner().invoke(cli, ["validate", path])
    assert result.exit_code == 0, result.output


def test_an_error_from_set_says_it_came_from_set(tmp_path, sentiment_data):
    train, _ = sentiment_data
    path = write(tmp_path, {"task": "sentence_classification", "data": {"train": train}})
    with pytest.raises(SpecError, match=r"spec\.yaml with --set trian\.lr=1: unknown key 'trian' "
                                        r"\(did you mean 'train'\?\)"):
        load_spec(path, ["trian.lr=1"])
    # an error in the file itself still names the file alone, --set or not
    bad = write(tmp_path, {"task": "sentence_classification", "data": {"train": train}, "trian": {}})
    with pytest.raises(SpecError, match=r"spec\.yaml: unknown key 'trian'"):
        load_spec(bad, ["train.lr=1e-4"])


def test_grad_accum_longer_than_an_epoch_is_one_line_and_writes_nothing(tmp_path, tiny_encoder, sentiment_data):
    """It used to crash with an IndexError after writing spec.yaml and manifest.json."""
    train, dev = sentiment_data   # 400 training texts: 25 batches of 16
    path = write(tmp_path, {"task": "sentence_classification", "encoder": {"model": tiny_encoder},
                            "data": {"train": train, "validation": dev}, "output": str(tmp_path / "run"),
                            "train": {"batch_size": 16, "grad_accum": 30, "loggers": []}})
    result = CliRunner().invoke(cli, ["run", path])
    assert result.exit_code == 2, result.output
    assert "train.grad_accum: 30 is more than the 25 batches of an epoch (400 training rows, batch_size 16)" \
        in result.stderr
    assert not (tmp_path / "run").exists()


def test_a_warmup_longer_than_the_run_is_said(tmp_path, tiny_encoder, sentiment_data):
    train, dev = sentiment_data
    path = write(tmp_path, {"task": "sentence_classification", "encoder": {"model": tiny_encoder},
                            "data": {"train": train, "validation": dev}, "output": str(tmp_path / "run"),
                            "train": {"max_steps": 3, "warmup": 100, "loggers": []}})
    result = CliRunner().invoke(cli, ["run", path])
    assert result.exit_code == 0, result.output
    assert "warning: train.warmup: 100 steps is longer than the run's 3" in result.stderr


@pytest.mark.parametrize("key, value, message", [
    ("seed", 99999999999999999999999, "train.seed"), ("epochs", float("inf"), "train.epochs")])
def test_seed_and_epochs_out_of_range_are_spec_errors(tmp_path, sentiment_data, key, value, message):
    """Both used to pass validate and crash run with a traceback."""
    train, _ = sentiment_data
    path = write(tmp_path, {"task": "sentence_classification", "data": {"train": train}, "train": {key: value}})
    with pytest.raises(SpecError, match=message):
        load_spec(path)


def test_roberta_positions_hold_two_fewer_tokens(tmp_path, sentiment_data):
    """RoBERTa-style positions start after the pad id: 130 positions (pad id 0) hold 129 tokens."""
    from taskbert.testing import TINY_WORDS, make_tiny_encoder

    train, _ = sentiment_data
    encoder = make_tiny_encoder(str(tmp_path / "roberta"), TINY_WORDS, max_positions=129, model_type="roberta")
    for length, code in ((129, 0), (130, 2)):
        path = write(tmp_path, {"task": "sentence_classification", "data": {"train": train},
                                "encoder": {"model": encoder, "max_length": length}})
        result = CliRunner().invoke(cli, ["validate", path])
        assert result.exit_code == code, result.output
    assert "130 exceeds the 129 tokens the model's positions hold" in result.stderr
