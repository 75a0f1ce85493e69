"""taskbert run --seeds N: N complete runs and the mean ± standard deviation of each metric."""

import json
import os
import statistics

import pytest
import yaml
from click.testing import CliRunner

from taskbert.cli import cli
from taskbert.cli.seeds import summarize
from taskbert.testing import tiny_classification_spec, write_polarity_data


def test_summarize_by_hand():
    runs = {1: {"validation/accuracy": 0.8, "validation/loss": 0.5, "step": 10, "final": True},
            2: {"validation/accuracy": 0.9, "validation/loss": 0.3, "step": 10, "final": True},
            3: {"validation/accuracy": 1.0, "validation/loss": 0.4, "step": 10, "final": True}}
    s = summarize(runs)
    assert set(s["mean"]) == {"validation/accuracy", "validation/loss"}  # no bookkeeping keys
    assert s["mean"]["validation/accuracy"] == pytest.approx(0.9)
    assert s["std"]["validation/accuracy"] == pytest.approx(0.1)  # sample std: sqrt(0.02 / 2)
    assert s["std"]["validation/loss"] == pytest.approx(0.1)
    assert summarize({5: {"validation/accuracy": 0.7}})["std"]["validation/accuracy"] == 0.0


def test_run_with_seeds(tiny_encoder, tmp_path):
    train = write_polarity_data(tmp_path / "train.jsonl", 160, 1)
    dev = write_polarity_data(tmp_path / "dev.jsonl", 40, 2)
    spec = tiny_classification_spec(tiny_encoder, train, dev, tmp_path / "runs", epochs=1, seed=7)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(cli, ["run", str(path), "--seeds", "3"])
    assert result.exit_code == 0, result.output

    out = tmp_path / "runs"
    assert sorted(os.listdir(out)) == ["seed-7", "seed-8", "seed-9", "seeds.json"]
    finals = {}
    for seed in (7, 8, 9):
        run_spec = yaml.safe_load((out / f"seed-{seed}" / "spec.yaml").read_text())
        assert run_spec["train"]["seed"] == seed and run_spec["output"] == str(out / f"seed-{seed}")
        with open(out / f"seed-{seed}" / "metrics.jsonl", encoding="utf-8") as fh:
            finals[seed] = [json.loads(line) for line in fh if line.strip()][-1]
    losses = [finals[s]["validation/loss"] for s in (7, 8, 9)]
    assert len(set(losses)) == 3  # the seed changes the run

    summary = json.loads((out / "seeds.json").read_text())
    assert summary["seeds"] == [7, 8, 9]
    assert summary["mean"]["validation/loss"] == pytest.approx(statistics.fmean(losses))
    assert summary["std"]["validation/loss"] == pytest.approx(statistics.stdev(losses))
    assert summary["n"]["validation/accuracy"] == 3
    line = (f"validation/loss {statistics.fmean(losses):.4f} ± {statistics.stdev(losses):.4f} (n=3)")
    assert line in result.stdout

    # a second call refuses to overwrite the seed runs unless told to
    again = CliRunner().invoke(cli, ["run", str(path), "--seeds", "3"])
    assert again.exit_code == 2 and "already holds a run" in again.output
    # report on the seeds folder points to one of its runs
    result = CliRunner().invoke(cli, ["report", str(out)])
    assert result.exit_code == 2
    assert "a folder of `taskbert run --seeds` runs" in result.stderr and str(out / "seed-7") in result.stderr
