"""taskbert_cpu.native: the one-pass hashed dropout kernel gives the torch version's numbers."""

import shutil

import pytest
import torch

from taskbert_cpu import dropout as fp
from taskbert_cpu import native

needs_compiler = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                                    reason="no C compiler here: the torch version runs")


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """A library state of its own and an empty cache; restored afterwards."""
    monkeypatch.setattr(native, "_state", {"tried": False, "lib": None})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("TASKBERT_NATIVE", raising=False)
    return tmp_path


def _both(x, p, grad=None, seed=7):
    """(output, input gradient) of hash_dropout with the kernel and with torch operations."""
    results = []
    lib = native.library()
    for use in (lib, None):
        native._state.update(tried=True, lib=use)
        leaf = x.detach().clone().requires_grad_(True)
        torch.manual_seed(seed)
        out = fp.hash_dropout(leaf, p)
        after = torch.rand(3)            # the generator moved on by the same draws
        out.backward(torch.ones_like(out) if grad is None else grad)
        results.append((out.detach(), leaf.grad, after))
    native._state.update(tried=True, lib=lib)
    return results


@needs_compiler
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1,), (7, 11), (4, 12, 33, 33), (1001, 384)])
def test_kernel_gives_the_torch_versions_outputs_and_gradients(fresh, dtype, shape):
    assert native.library() is not None
    x = torch.randn(*shape).to(dtype)
    grad = torch.randn(*shape).to(dtype)
    (out, g, after), (want, want_g, want_after) = _both(x, 0.1, grad)
    assert out.dtype == dtype and torch.equal(out, want)
    assert torch.equal(g, want_g) and torch.equal(after, want_after)
    kept = (out != 0).float().mean().item()
    assert x.numel() < 1000 or abs(kept - 0.9) < 0.01


@needs_compiler
def test_kernel_mask_is_the_hash_written_by_hand(fresh):
    from tests.cpu_plugin.test_dropout import _reference_mask

    keys = [123456789, 2024]
    out = fp._apply_kernel(torch.ones(77), 0.3, keys)
    assert native.library() is not None
    assert (out != 0).tolist() == _reference_mask(77, 0.3, keys)
    assert torch.allclose(out[out != 0], torch.tensor(1 / 0.7))


@needs_compiler
def test_kernel_keeps_non_finite_values_as_the_torch_version_does(fresh):
    x = torch.tensor([float("inf"), float("-inf"), float("nan"), -0.0, 1e-40] * 40)
    (out, _, _), (want, _, _) = _both(x, 0.5)
    assert torch.equal(out.isnan(), want.isnan())       # a dropped inf is NaN in both
    same = ~want.isnan()
    assert torch.equal(out[same], want[same]) and torch.equal(out.signbit(), want.signbit())


@needs_compiler
def test_non_contiguous_input(fresh):
    x = torch.randn(64, 40).t()                     # a transposed view
    (out, g, _), (want, want_g, _) = _both(x, 0.2)
    assert torch.equal(out, want) and torch.equal(g, want_g)


@needs_compiler
def test_built_once_then_loaded_from_the_cache(fresh, monkeypatch):
    assert native.library() is not None
    built = list((fresh / "taskbert" / "native").iterdir())
    assert len(built) == 1 and built[0].suffix == ".so"
    monkeypatch.setattr(native, "_state", {"tried": False, "lib": None})

    def no_compiling(*a, **k):
        raise AssertionError("compiled again")
    monkeypatch.setattr(native.subprocess, "run", no_compiling)
    assert native.library() is not None


def test_no_compiler_or_a_failed_build_falls_back_and_leaves_nothing(fresh, monkeypatch):
    monkeypatch.setenv("CC", str(fresh / "no-such-compiler"))
    assert native.library() is None
    monkeypatch.setattr(native, "_state", {"tried": False, "lib": None})
    monkeypatch.setenv("CC", shutil.which("false") or "false")   # a compiler that fails
    assert native.library() is None
    folder = fresh / "taskbert" / "native"
    assert not folder.exists() or not any(folder.iterdir())      # no half-written library
    x = torch.randn(50, 8)
    torch.manual_seed(1)
    out = fp.hash_dropout(x, 0.25)                               # the torch version
    torch.manual_seed(1)
    keep = fp.keep_mask(x.shape, 0.25)
    assert torch.equal(out != 0, keep) and torch.allclose(out, x * keep / 0.75)


def test_switched_off_by_environment(fresh, monkeypatch):
    monkeypatch.setenv("TASKBERT_NATIVE", "0")
    assert native.library() is None


@needs_compiler
def test_a_cached_library_that_does_not_load_is_built_again(fresh):
    target = native.library_path(native._compiler())
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not a library")
    assert native.library() is not None
    assert target.read_bytes()[:4] == b"\x7fELF"
