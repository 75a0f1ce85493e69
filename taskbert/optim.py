"""What the training loop is configured with: device, precision, AdamW, the learning-rate
schedule and seeding (``trainer.py`` holds the loop itself)."""

import random

import numpy as np
import torch


def pick_device():
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_precision(setting, device):
    """The autocast dtype for ``train.precision`` (None = fp32).

    ``auto`` uses bf16 only where the hardware has it. On a 2-core AMD EPYC without bf16 units,
    autocast bf16 made training 15-60x slower, so such a CPU stays fp32; on a 2-core Xeon with
    AMX (oneDNN reports native bf16), bf16 autocast trained MiniLM 1.6x faster than fp32
    (bench/RESULTS.md, ``--bf16``). Evaluation runs under the same autocast.
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
