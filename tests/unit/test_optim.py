"""taskbert.train.optim.clipped_step: clipping folded into the fused AdamW equals clip_grad_norm_ + step."""

import math

import pytest
import torch

from taskbert.train.optim import clipped_step


def _pair(fused, seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    twin = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))
    twin.load_state_dict(model.state_dict())
    x = torch.randn(8, 6)
    for m in (model, twin):
        (m(x) ** 2).sum().mul(10).backward()
    make = lambda m: torch.optim.AdamW(m.parameters(), lr=0.1, weight_decay=0.01, fused=fused)  # noqa: E731
    return model, make(model), twin, make(twin)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("max_norm", [0.05, 1e6])   # clipping on, and a norm far below the limit
def test_clipped_step_equals_clip_grad_norm_then_step(fused, max_norm):
    model, opt, twin, twin_opt = _pair(fused)
    want = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    opt.step()
    got = clipped_step(twin_opt, max_norm)
    assert torch.allclose(want, got)
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-5)
    assert not hasattr(twin_opt, "grad_scale")   # nothing left behind for the next step
    # with max_norm 0.05 clipping really scaled the gradients (the norm was far above it)
    if max_norm < 1:
        assert float(want) > 10 * max_norm


def test_a_non_finite_norm_returns_before_any_update():
    model, opt, twin, twin_opt = _pair(True)
    before = [p.detach().clone() for p in twin.parameters()]
    next(twin.parameters()).grad[0, 0] = math.inf
    assert not torch.isfinite(clipped_step(twin_opt, 1.0))
    assert all(torch.equal(a, b) for a, b in zip(before, twin.parameters()))
    assert not twin_opt.state   # AdamW never stepped
