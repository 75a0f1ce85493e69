"""``train.compile: true``: the training model under ``torch.compile`` (TorchInductor).

Off by default and not yet measured on a GPU (docs/speed.md, "On a GPU"): it is an option to
measure before it is recommended. Only the training forward and backward are compiled;
evaluation, ``best/`` and checkpoints use the plain module (the compiled wrapper shares its
parameters, and its state-dict keys would carry an ``_orig_mod.`` prefix).
"""

import torch

from ..errors import SpecError

#: the torch.compile backend; the tests set a lighter one (``aot_eager``: the same graph
#: capture and autograd tracing without Inductor's code generation, which takes minutes on a
#: 2-core CPU)
BACKEND = "inductor"


def compile_unavailable(device):
    """Why ``torch.compile`` cannot run here (one phrase), or None when it can.

    Inductor needs TorchDynamo on this Python and platform, a C++ compiler for CPU kernels and
    Triton for CUDA kernels."""
    import torch._dynamo

    if not torch._dynamo.is_dynamo_supported():
        return "torch.compile (TorchDynamo) is not supported on this Python or platform"
    if BACKEND != "inductor":
        return None
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "torch.compile on CUDA needs the triton package, which is missing"
    if device.type == "cpu":
        try:
            from torch._inductor.cpp_builder import get_cpp_compiler

            get_cpp_compiler()
        except Exception as exc:   # its own error types vary by torch version
            return f"torch.compile on a CPU needs a C++ compiler (g++ or clang++; $CXX): {exc}"
    return None


def check_compile(spec, device):
    """Refuse ``train.compile: true`` in one line, before weights load, where it cannot run."""
    if not spec.train.compile:
        return
    why = compile_unavailable(device)
    if why:
        raise SpecError(f"{spec.path}: train.compile: true, but {why}; set train.compile: false")


def compile_model(model, enabled):
    """``model`` under ``torch.compile`` when ``enabled``, else ``model`` itself.

    ``dynamic=None`` (torch's default): the first batch compiles for its shape, and a batch of
    another length then recompiles once with dynamic sizes, so length buckets do not compile
    again for every length."""
    if not enabled:
        return model
    return torch.compile(model, backend=BACKEND, dynamic=None)
