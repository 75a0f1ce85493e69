"""Loggers: chosen by name, checked with the spec, and each writes what the run logged."""

import csv
import importlib.util
import json
import os

import pytest
import yaml
from click.testing import CliRunner

from taskbert import UnknownNameError, hookimpl
from taskbert.plugins import manager as plugin_mod
from taskbert.cli import cli
from taskbert.config.spec import load_spec
from taskbert.testing import run_spec, tiny_classification_spec, write_polarity_data


def read_jsonl(path):
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@pytest.fixture()
def spec_dict(tiny_encoder, tmp_path):
    train = write_polarity_data(tmp_path / "train.jsonl", 160, 1)
    dev = write_polarity_data(tmp_path / "dev.jsonl", 40, 2)
    return tiny_classification_spec(tiny_encoder, train, dev, tmp_path / "run", epochs=2, eval_every=10)


def write_spec(tmp_path, spec):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def test_unknown_logger_fails_at_validation_before_anything_runs(spec_dict, tmp_path):
    spec_dict["train"]["loggers"] = ["console", "tensorbord"]
    path = write_spec(tmp_path, spec_dict)
    with pytest.raises(UnknownNameError, match=r"train.loggers\[1\]: unknown logger 'tensorbord' "
                                        r"\(did you mean 'tensorboard'\?\); known: console, csv, tensorboard"):
        load_spec(path)
    result = CliRunner().invoke(cli, ["run", path])
    assert result.exit_code == 2 and "unknown logger 'tensorbord'" in result.output
    assert not os.path.exists(spec_dict["output"])  # nothing written, no weights loaded


def test_missing_tensorboard_is_one_clear_line(spec_dict, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboard" else real(name, *a))
    spec_dict["train"]["loggers"] = ["tensorboard"]
    result = CliRunner().invoke(cli, ["validate", write_spec(tmp_path, spec_dict)])
    assert result.exit_code == 2
    assert "train.loggers[0]: logger 'tensorboard' needs the tensorboard package" in result.output
    assert "pip install 'taskbert[tensorboard]'" in result.output


def test_console_csv_and_tensorboard_record_every_line(spec_dict, tmp_path, capsys):
    loggers = ["console", "csv"]
    has_tb = importlib.util.find_spec("tensorboard") is not None
    if has_tb:
        loggers.append("tensorboard")
    spec_dict["train"]["loggers"] = loggers
    metrics, run_dir = run_spec(spec_dict, str(tmp_path))
    history = read_jsonl(os.path.join(run_dir, "metrics.jsonl"))
    # 160 examples / 16 = 10 steps per epoch, 2 epochs: logs at 5, 10, 15, 20; evals at 10, 20
    assert [h["step"] for h in history if "train/loss" in h] == [5, 10, 15, 20]
    assert [h["step"] for h in history if "validation/accuracy" in h and not h.get("final")] == [10, 20]

    out = capsys.readouterr().out
    assert "step 5/20: epoch 1  train/loss" in out and "best model: validation/accuracy" in out

    with open(os.path.join(run_dir, "metrics.csv"), newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(history)
    for row, rec in zip(rows, history):
        for key, value in rec.items():
            assert row[key] == str(value), (key, row[key], value)

    if has_tb:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(os.path.join(run_dir, "tensorboard"))
        acc.Reload()
        losses = [(e.step, e.value) for e in acc.Scalars("train/loss")]
        expected = [(h["step"], h["train/loss"]) for h in history if "train/loss" in h]
        assert [s for s, _ in losses] == [s for s, _ in expected]
        assert all(abs(a - b) < 1e-6 for (_, a), (_, b) in zip(losses, expected))
        assert acc.Scalars("best/validation/accuracy")[0].value == pytest.approx(metrics["validation/accuracy"])


class RecordingLogger:
    """A third-party logger: keeps what it is given in a class-level list."""

    seen = []

    def __init__(self, trainer):
        self.seen.clear()

    def log(self, step, metrics):
        self.seen.append((step, dict(metrics)))

    def close(self):
        self.seen.append(("closed", None))


class LoggerPlugin:
    @staticmethod
    @hookimpl
    def taskbert_register_loggers(register):
        register("recording", RecordingLogger)


def test_a_plugin_logger_is_validated_and_called(spec_dict, tmp_path):
    plugin_mod.reset()
    plugin_mod.get_plugin_manager().register(LoggerPlugin, name="test-logger")
    try:
        spec_dict["train"]["loggers"] = ["recording"]
        assert load_spec(write_spec(tmp_path, spec_dict)).train.loggers == ("recording",)
        assert plugin_mod.registries().loggers.owner("recording") == "test-logger"
        run_spec(spec_dict, str(tmp_path / "r"))
        history = read_jsonl(os.path.join(spec_dict["output"], "metrics.jsonl"))
        assert [m for _, m in RecordingLogger.seen[:-1]] == history
        assert RecordingLogger.seen[-1] == ("closed", None)
    finally:
        plugin_mod.reset()


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None, reason="tensorboard not installed")
def test_tensorboard_curves_have_each_step_once_after_a_resume(spec_dict, tmp_path):
    """Steps logged after the checkpoint and before the crash are logged again on --resume;
    the TensorBoard writer purges them, as metrics.jsonl is cut back, so no step shows twice."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from taskbert.run import execute
    from taskbert.testing import Crash, crash_at

    spec_dict["train"].update(log_every=1, eval_every=10, loggers=["tensorboard"])
    spec = load_spec(write_spec(tmp_path, spec_dict))
    with crash_at(13), pytest.raises(Crash):
        execute(spec)   # steps 11 and 12 reach TensorBoard after the step-10 checkpoint
    execute(spec, resume=True)
    acc = EventAccumulator(os.path.join(spec.output, "tensorboard"))
    acc.Reload()
    steps = [e.step for e in acc.Scalars("train/loss")]
    assert steps == sorted(set(steps)) and steps[:13] == list(range(1, 14)), steps
