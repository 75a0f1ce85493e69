"""Prediction on a CPU: linear layers whose weights are packed once for oneDNN.

A weight that does not change between calls can be reordered once into the blocked layout
oneDNN's matrix-multiply kernels read, instead of being packed again inside every call.
:func:`pack_linear_weights` does that for a loaded model's ``nn.Linear`` layers (what
``torch.compile``'s CPU "freezing" does too, without compiling anything); figures are in
``bench/RESULTS.md``.

Prediction only (``taskbert predict``, ``serve``): a packed copy of a weight would go stale
the moment training changed it, so every call with gradients enabled, another dtype or
another device runs the ordinary ``F.linear`` on the live weight.
"""

import logging

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)


def _kernels():
    """oneDNN's weight reorder and linear ops, or None on a build without them."""
    if not torch.backends.mkldnn.is_available():
        return None
    try:
        ops = torch.ops.mkldnn
        return ops._reorder_linear_weight, ops._linear_pointwise
    except (AttributeError, RuntimeError):
        return None


def _packed_forward(layer, packed, kernel):
    def forward(x):
        if torch.is_grad_enabled() or x.dtype != torch.float32 or x.device.type != "cpu":
            return F.linear(x, layer.weight, layer.bias)
        return kernel(x, packed, layer.bias, "none", [], "")
    return forward


def pack_linear_weights(model, rows_hint=1024):
    """Give every fp32 CPU ``nn.Linear`` of ``model`` a weight packed for oneDNN (used
    without gradients only; weights, ``state_dict`` and saved files are unchanged). Each
    layer is checked against ``F.linear`` once; a layer that differs, or a build without
    oneDNN, keeps the ordinary path. Returns how many layers were packed."""
    kernels = _kernels()
    if kernels is None:
        return 0
    reorder, kernel = kernels
    packed_layers = 0
    with torch.no_grad():
        for layer in model.modules():
            if type(layer) is not nn.Linear or getattr(layer, "_taskbert_packed", False) \
                    or layer.weight.dtype != torch.float32 or layer.weight.device.type != "cpu":
                continue
            try:
                packed = reorder(layer.weight.detach(), rows_hint)
                probe = torch.randn(5, layer.in_features, generator=torch.Generator().manual_seed(0))
                same = torch.allclose(kernel(probe, packed, layer.bias, "none", [], ""),
                                      F.linear(probe, layer.weight, layer.bias), atol=1e-4, rtol=1e-4)
            except RuntimeError as exc:
                log.info("oneDNN packed linear not used: %s", exc)
                return packed_layers
            if not same:
                log.info("oneDNN packed linear not used: it differs from F.linear")
                return packed_layers
            layer.forward = _packed_forward(layer, packed, kernel)
            layer._taskbert_packed = True
            packed_layers += 1
    return packed_layers
