"""On a GPU the loop reads the loss and the finiteness checks back at log steps only
(taskbert.train.scaling.DeferredChecks): the same run, no read per step, and a bad step's
update still skipped. On a CPU the loop checks every step; here ``defers`` is forced on."""

import json
import math
import os
import sys

import pytest
import torch
import yaml
from click.testing import CliRunner

from taskbert.cli import cli
from taskbert.config.spec import load_spec
from taskbert.run import execute
from taskbert.testing import write_polarity_data
from taskbert.train import scaling
from taskbert.train.distributed import World
from taskbert.train.optim import clipped_step
from taskbert.train.scaling import DeferredChecks


def _opt(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 3)
    (model(torch.randn(5, 4)) ** 2).sum().backward()
    return model, torch.optim.AdamW(model.parameters(), lr=0.1, fused=True)


@pytest.mark.parametrize("max_norm", [0.05, None])
def test_a_deferred_step_equals_the_checked_one(max_norm):
    (a, opt_a), (b, opt_b) = _opt(), _opt()
    clipped_step(opt_a, max_norm)
    clipped_step(opt_b, max_norm, bad=torch.tensor(False))
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not hasattr(opt_b, "found_inf") and not hasattr(opt_b, "grad_scale")


@pytest.mark.parametrize("spoil", ["flag", "gradient"])
def test_a_bad_deferred_step_is_skipped_on_the_device(spoil):
    model, opt = _opt()
    before = [p.detach().clone() for p in model.parameters()]
    bad = torch.tensor(spoil == "flag")
    if spoil == "gradient":
        model.weight.grad[0, 0] = math.inf
    norm = clipped_step(opt, 1.0, bad=bad)
    assert all(torch.equal(x, y) for x, y in zip(before, model.parameters()))
    assert all(float(s["step"]) == 0 for s in opt.state.values())   # AdamW's count did not move
    assert (spoil == "gradient") == (not torch.isfinite(norm))


def test_the_checks_add_losses_and_keep_the_first_bad_step():
    checks = DeferredChecks(torch.device("cpu"), World(), None, None)   # a CPU: not deferred, but it counts
    assert not checks.deferred
    assert checks.read() == (0.0, 0)
    for step, (loss, norm) in enumerate([(1.0, 1.0), (2.0, math.inf), (3.0, 1.0), (math.nan, 1.0)], 1):
        loss = torch.tensor(loss)
        checks.record(loss, torch.tensor(norm), DeferredChecks.flag(loss), step)
    total, bad = checks.read()
    assert bad == 2 and math.isnan(total)
    checks.record(torch.tensor(0.5), torch.tensor(1.0), torch.tensor(False), 5)
    assert checks.read() == (0.5, 0)


def _spec(folder, tiny_encoder, **train):
    os.makedirs(folder, exist_ok=True)
    data = write_polarity_data(os.path.join(folder, "train.jsonl"), 120, 4)
    spec = {"task": "sentence_classification", "encoder": {"model": tiny_encoder, "max_length": 32},
            "data": {"train": data, "validation": data}, "task_options": {"dropout": 0.1},
            "train": {"epochs": 2, "batch_size": 8, "lr": 1e-2, "log_every": 5, "eval_every": 15,
                      "save_every": None, "seed": 11, "threads": 1, "loggers": [], "precision": "fp32",
                      **train},
            "output": os.path.join(folder, "run")}
    path = os.path.join(folder, "spec.yaml")
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(spec, fh)
    return path


READS = ("item", "tolist", "__bool__", "__float__", "__int__")
STEP_CODE = {"_forward_backward", "_optimizer_step", "clipped_step", "step", "flag", "record"}


def _count_reads(monkeypatch):
    """Reads of a tensor's value made directly by the loop's per-step code."""
    counted = []
    for name in READS:
        original = getattr(torch.Tensor, name)

        def read(self, *a, _original=original, **k):
            caller = sys._getframe(1).f_code
            if caller.co_name in STEP_CODE and f"{os.sep}taskbert{os.sep}train{os.sep}" in caller.co_filename:
                counted.append(caller.co_name)
            return _original(self, *a, **k)
        monkeypatch.setattr(torch.Tensor, name, read)
    return counted


def _metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def test_a_deferred_run_reads_nothing_per_step_and_trains_the_same(tmp_path, tiny_encoder, monkeypatch):
    runs = {}
    for deferred in (False, True):
        monkeypatch.setattr(scaling, "defers", lambda *a, _d=deferred: _d)
        counted = _count_reads(monkeypatch)
        folder = str(tmp_path / str(deferred))
        final = execute(load_spec(_spec(folder, tiny_encoder)))
        runs[deferred] = final, _metrics(os.path.join(folder, "run")), counted
        monkeypatch.undo()
    (final_a, log_a, reads_a), (final_b, log_b, reads_b) = runs[False], runs[True]
    assert len(reads_a) >= 30 and reads_b == []        # 30 steps: each read once vs. never
    assert final_a["validation/accuracy"] == final_b["validation/accuracy"]
    assert final_a["validation/loss"] == final_b["validation/loss"]   # the same weights
    train_a = [r["train/loss"] for r in log_a if "train/loss" in r]
    train_b = [r["train/loss"] for r in log_b if "train/loss" in r]
    assert len(train_a) == len(train_b) == 6
    assert all(abs(x - y) < 1e-5 * max(1.0, abs(x)) for x, y in zip(train_a, train_b))


def test_a_deferred_nan_names_its_step_and_where_it_was_seen(tmp_path, tiny_encoder, monkeypatch):
    monkeypatch.setattr(scaling, "defers", lambda *a: True)
    path = _spec(str(tmp_path), tiny_encoder, lr=1e12, warmup=0, log_every=4)
    result = CliRunner().invoke(cli, ["run", path])
    assert result.exit_code == 1, result.output
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: the loss or the gradient norm was not finite at step 2; its update was "
                           "not made and training stopped at step 4, where this is checked"), line
    assert not os.path.exists(os.path.join(tmp_path, "run", "metrics.jsonl")) or \
        all(math.isfinite(r["train/loss"]) for r in _metrics(os.path.join(tmp_path, "run")) if "train/loss" in r)


def test_only_a_single_cuda_process_without_fp16_scaling_defers():
    class World:
        def __init__(self, enabled):
            self.enabled = enabled

    class Scaling:
        def __init__(self, scaler):
            self.scaler = scaler

    fused = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters(), fused=True)
    plain = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters())
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert scaling.defers(cuda, World(False), Scaling(None), fused)
    assert not scaling.defers(cpu, World(False), Scaling(None), fused)          # a read costs nothing there
    assert not scaling.defers(torch.device("mps"), World(False), Scaling(None), fused)
    assert not scaling.defers(cuda, World(True), Scaling(None), fused)          # DDP sums on the host
    assert not scaling.defers(cuda, World(False), Scaling(object()), fused)     # fp16's scaler reads
    assert not scaling.defers(cuda, World(False), Scaling(None), plain)         # no found_inf to skip with
