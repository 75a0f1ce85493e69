"""What the training loop is configured with: device, precision, AdamW, the learning-rate
schedule and seeding (``loop.py`` holds the loop itself)."""

import random

import numpy as np
import torch


def pick_device():
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_precision(setting, device):
    """The autocast dtype for ``train.precision`` (None = fp32).

    ``auto`` uses bf16 only where the hardware has it (oneDNN reports native bf16: AMX or
    AVX-512 bf16); without such units bf16 autocast is far slower than fp32 on a CPU, so such a
    CPU stays fp32 (the measurements: bench/RESULTS.md, ``--bf16``). Evaluation runs under the
    same autocast.
    """
    if setting == "fp32":
        return None
    if setting == "fp16":
        return torch.float16
    if setting == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    try:
        native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    except (AttributeError, RuntimeError):
        native = False
    return torch.bfloat16 if native else None


def build_optimizer(model, lr, weight_decay, device):
    """AdamW with no weight decay on biases and LayerNorm weights (as BERT did).

    The fused kernel was about 21% faster than foreach on MiniLM on a 2-core CPU.
    """
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    try:
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=lr)


def clipped_step(optimizer, max_norm, bad=None):
    """Clip the gradients of ``optimizer``'s parameters to a total L2 norm of ``max_norm``
    (as ``clip_grad_norm_``: each scaled by ``min(1, max_norm / (norm + 1e-6))``; None: no
    clipping), then step; returns the norm before clipping. A non-finite norm returns before
    any update. With ``bad`` (a bool tensor on the device; fused AdamW only) nothing is read
    back from the device: the kernel skips the update itself when ``bad`` is set or the norm
    is not finite (its ``found_inf`` input), and the caller checks the norm later.

    With the fused AdamW the scaling happens inside its kernel (its ``grad_scale`` input, which
    divides every gradient as it is read) instead of in a pass of its own over all 22.7M
    MiniLM gradients: clipping plus step 28.3 -> 24.0 ms on a 2-core Xeon.
    """
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    norm = torch.nn.utils.get_total_norm([p.grad for p in params])
    if bad is None and not torch.isfinite(norm):
        return norm
    if optimizer.defaults.get("fused"):
        if max_norm:   # read by torch.optim.Adam(W).step, as GradScaler's inputs are
            optimizer.grad_scale = 1.0 / torch.clamp(max_norm / (norm + 1e-6), max=1.0)
        if bad is not None:
            optimizer.found_inf = (bad | ~torch.isfinite(norm)).float()
        try:
            optimizer.step()
        finally:
            optimizer.__dict__.pop("grad_scale", None)
            optimizer.__dict__.pop("found_inf", None)
    elif bad is not None:
        raise ValueError("clipped_step: a check left to later (bad=) needs the fused AdamW")
    elif not max_norm:
        optimizer.step()
    else:
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)
        optimizer.step()
    return norm


def linear_schedule(optimizer, warmup_steps, total_steps):
    """Linear warmup from 0 to the peak lr, then linear decay to 0 at ``total_steps``."""
    def factor(step):
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def seed_everything(seed):
    """Seed Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
