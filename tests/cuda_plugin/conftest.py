"""The CPU stand-in for torch's CUDA-only variable-length attention kernel."""

import pytest
import torch

from taskbert_cuda import varlen


def reference_kernel(q, k, v, cu_q, cu_k, max_q, max_k, scale=None):
    """Plain attention row by row: what torch's varlen_attn computes on CUDA."""
    out = torch.empty_like(q)
    for a, b in zip(cu_q[:-1].tolist(), cu_q[1:].tolist()):   # (tokens, heads, d) per row
        part = [t[a:b].transpose(0, 1) for t in (q, k, v)]
        out[a:b] = torch.nn.functional.scaled_dot_product_attention(*part, scale=scale).transpose(0, 1)
    return out


@pytest.fixture
def cpu_varlen(monkeypatch):
    """``taskbert_varlen`` runs :func:`reference_kernel`; the list counts its calls."""
    calls = []
    monkeypatch.setattr(varlen, "kernel", lambda *a, **k: calls.append(1) or reference_kernel(*a, **k))
    return calls
