"""fp16 loss scaling (taskbert/train/scaling.py), on the CPU, whose autocast and GradScaler
take fp16 as a GPU's do: the scaled step equals the plain fp32 computation, an overflow skips
the step and halves the scale instead of failing the run, a tiny fp16 run learns, and its
resume is bit-identical (the scale is in the checkpoint)."""

import json
import os

import pytest
import torch

from taskbert.testing import crash_at, run_spec
from taskbert.train.scaling import LossScaler


def model_and_optimizer(seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    return model, torch.optim.AdamW(model.parameters(), lr=1e-2)


def test_without_fp16_there_is_no_scaler():
    assert LossScaler(None, torch.device("cpu")).scaler is None
    assert LossScaler(torch.bfloat16, torch.device("cpu")).state_dict() is None
    assert LossScaler(torch.float16, torch.device("cpu")).scaler is not None


@pytest.mark.parametrize("max_norm", [None, 0.05])
def test_a_scaled_step_equals_the_plain_step(max_norm):
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    plain, opt = model_and_optimizer()
    torch.nn.functional.cross_entropy(plain(x), y).backward()
    if max_norm:
        torch.nn.utils.clip_grad_norm_(plain.parameters(), max_norm)
    opt.step()
    scaled, opt2 = model_and_optimizer()
    scaling = LossScaler(torch.float16, torch.device("cpu"))
    scaling.scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)   # no overflow in fp32 maths
    scaling.backward(torch.nn.functional.cross_entropy(scaled(x), y))
    norm, skipped = scaling.step(opt2, max_norm)
    assert not skipped and torch.isfinite(norm)
    for a, b in zip(plain.parameters(), scaled.parameters()):
        assert torch.allclose(a, b, atol=1e-6), (a - b).abs().max()


def test_an_overflow_skips_the_step_and_halves_the_scale():
    model, opt = model_and_optimizer()
    before = [p.detach().clone() for p in model.parameters()]
    scaling = LossScaler(torch.float16, torch.device("cpu"))
    scale = scaling.scaler.get_scale()
    loss = model(torch.randn(4, 6)).sum() * float("inf")
    scaling.backward(loss)
    norm, skipped = scaling.step(opt, 1.0)
    assert skipped and not torch.isfinite(norm) and scaling.skipped == 1
    assert scaling.scaler.get_scale() == scale / 2
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))   # no update
    state = scaling.state_dict()
    again = LossScaler(torch.float16, torch.device("cpu"))
    again.load_state_dict(json.loads(json.dumps(state)))   # JSON, as the checkpoint holds it
    again.scaler.scale(torch.ones(()))                     # the scale is made on first use
    assert again.scaler.get_scale() == scale / 2 and again.skipped == 1


def test_a_tiny_fp16_run_learns_and_resumes_bit_identical(classification_spec, tmp_path, monkeypatch):
    # a scale that overflows at first and grows every 3 good steps: it changes all run long,
    # so a resume that did not restore it would train differently
    made = LossScaler.__init__

    def restless(self, amp_dtype, device):
        made(self, amp_dtype, device)
        self.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 24, growth_interval=3)
    monkeypatch.setattr(LossScaler, "__init__", restless)
    spec = dict(classification_spec)
    spec["train"] = {**spec["train"], "precision": "fp16", "save_every": 5, "log_every": 5}
    metrics, run_dir = run_spec({**spec, "output": str(tmp_path / "a")}, str(tmp_path / "a-spec"))
    assert metrics["validation/accuracy"] >= 0.8
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as fh:
        full = [json.loads(line) for line in fh]
    folders = sorted(os.listdir(os.path.join(run_dir, "checkpoint")))
    with open(os.path.join(run_dir, "checkpoint", folders[-1], "trainer_state.json"), encoding="utf-8") as fh:
        saved = json.load(fh)["loss_scale"]
    assert saved["skipped"] > 0 and saved["scaler"]["scale"] != 2.0 ** 24
    out = str(tmp_path / "b")
    with pytest.raises(Exception), crash_at(10):
        run_spec({**spec, "output": out}, str(tmp_path / "b-spec"))
    from taskbert.config.spec import load_spec
    from taskbert.run import execute

    resumed = execute(load_spec(os.path.join(str(tmp_path / "b-spec"), "spec.yaml")), resume=True)
    strip = lambda m: {k: v for k, v in m.items() if k not in ("samples_per_s", "tokens_per_s")}
    assert strip(resumed) == strip(metrics)
    with open(os.path.join(out, "metrics.jsonl"), encoding="utf-8") as fh:
        assert [strip(json.loads(line)) for line in fh] == [strip(m) for m in full]
