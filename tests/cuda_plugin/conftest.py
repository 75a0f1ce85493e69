"""On a CPU, ``taskbert_varlen`` runs the plain per-row computation in place of torch's
CUDA-only variable-length kernel."""

import pytest

from taskbert_cuda import varlen


@pytest.fixture
def cpu_varlen(monkeypatch):
    """``taskbert_varlen`` runs :func:`~taskbert_cuda.varlen.per_row_attention`; the list counts its calls."""
    calls = []
    monkeypatch.setattr(varlen, "kernel", lambda *a, **k: calls.append(1) or varlen.per_row_attention(*a, **k))
    return calls
