"""taskbert_cpu.packed: oneDNN-packed linear weights for prediction on a CPU."""

import pytest
import torch
from torch import nn

from taskbert_cpu import packed


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 24), nn.GELU(), nn.Linear(24, 8, bias=False))


def test_packed_layers_give_the_ordinary_outputs_and_leave_the_weights_alone():
    model = _model()
    x = torch.randn(3, 7, 16)
    with torch.no_grad():
        want = model(x)
    keys = {k: v.clone() for k, v in model.state_dict().items()}
    state = torch.random.get_rng_state()
    n = packed.pack_linear_weights(model)
    assert torch.equal(state, torch.random.get_rng_state())   # the probe draws from its own generator
    if packed._kernels() is None:
        pytest.skip("this torch build has no oneDNN")
    assert n == 2 and all(getattr(m, "_taskbert_packed", False) for m in model if isinstance(m, nn.Linear))
    with torch.inference_mode():
        got = model(x)
    assert torch.allclose(want, got, atol=1e-5)
    assert packed.pack_linear_weights(model) == 0            # packing twice packs nothing more
    assert model.state_dict().keys() == keys.keys()
    assert all(torch.equal(v, keys[k]) for k, v in model.state_dict().items())


def test_calls_with_gradients_use_the_live_weight():
    model = _model()
    packed.pack_linear_weights(model)
    with torch.no_grad():
        model[0].weight.mul_(2.0)    # a packed copy would still hold the old weight
    x = torch.randn(4, 16, requires_grad=True)
    out = model(x)
    ref = nn.functional.linear(nn.functional.gelu(nn.functional.linear(x, model[0].weight, model[0].bias)),
                               model[2].weight)
    assert torch.allclose(out, ref, atol=1e-6)
    out.sum().backward()
    assert model[0].weight.grad is not None and x.grad is not None
