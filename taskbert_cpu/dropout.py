"""Hashed dropout: the same Bernoulli keep masks as ``nn.Dropout``, drawn on every core.

torch's CPU ``bernoulli_`` draws from one Mersenne-Twister stream on one core, a visible
share of a training step on a small CPU (``bench/RESULTS.md``). :class:`HashDropout` draws the
keep mask from a counter-based hash instead (``lowbias32`` of the element index, keyed by two
numbers drawn from torch's default generator, two 16-bit uniforms per hash) and scales kept
values by 1 / (1 - p) as ``nn.Dropout`` does. Where a C compiler is at hand,
:mod:`taskbert_cpu.native` builds a kernel that makes the same mask in registers and applies
it in one pass, forward and backward. The keys come from torch's default generator, so
``torch.manual_seed`` and a checkpoint's RNG state still fix every mask (exact resume holds).
:func:`use_hash_dropout` swaps it in for every ``nn.Dropout`` of a model and for the dropout
on attention probabilities (a registered ``transformers`` attention function that falls back
to ``sdpa`` whenever no dropout is drawn).
"""

import functools
import logging

import torch
from torch import nn

from . import native

log = logging.getLogger(__name__)

_M1 = 0x7FEB352D
_M2 = 0x846CA68B - (1 << 32)  # the same bits as an int32
_INDEX = torch.arange(0, dtype=torch.int32)


def _mix(x):
    """lowbias32 (Wellons' hash prospector) on an int32 tensor, in place; int32
    multiplication wraps modulo 2**32, right shifts are made logical by masking."""
    x ^= (x >> 16) & 0xFFFF
    x *= _M1
    x ^= (x >> 15) & 0x1FFFF
    x *= _M2
    x ^= (x >> 16) & 0xFFFF
    return x


def _draw_keys():
    """The two hash keys of one mask, from torch's default generator (both paths draw alike)."""
    return torch.randint(0, 2**31 - 1, (2,)).tolist()


def keep_mask(shape, p, device="cpu", keys=None):
    """A bool tensor of ``shape``, each entry True with probability 1 - p, independently.

    Each 32-bit hash gives two 16-bit uniforms, so p is honoured to 1/65536 (0.1 keeps
    58982/65536 = 0.899994). ``keys`` (two ints in [0, 2**31)) default to two draws from
    torch's default generator.
    """
    global _INDEX
    n = 1
    for s in shape:
        n *= s
    half = (n + 1) // 2
    if _INDEX.numel() < half:
        _INDEX = torch.arange(max(half, 2 * _INDEX.numel()), dtype=torch.int32)
    if keys is None:
        keys = _draw_keys()
    x = _INDEX[:half] + keys[0]
    _mix(x)
    x ^= keys[1]        # a second key, spread by one more multiply: two calls whose index
    x *= _M1            # ranges overlap under the first key still get unrelated masks
    threshold = round(p * 2**16) - 2**15     # P(u >= threshold) = 1 - p for uniform int16 u
    return (x.view(torch.int16)[:n] >= threshold).view(shape).to(device)


def hash_dropout(x, p, training=True):
    """``nn.functional.dropout`` with the mask from :func:`keep_mask`: on a CPU tensor of
    float32 or bfloat16, by the one-pass C kernel of :mod:`taskbert.native` where it could be
    built (the same mask, the same numbers), else by torch operations."""
    if not training or p == 0:
        return x
    if p >= 1:
        return x * 0
    if x.device.type == "cpu" and x.dtype in _KERNELS and x.numel() and not torch.compiler.is_compiling() \
            and native.library() is not None:
        return _NativeDropout.apply(x, p, _draw_keys())
    keep = keep_mask(x.shape, p, x.device)
    return x * torch.where(keep, x.new_full((), 1.0 / (1.0 - p)), x.new_zeros(()))   # one pass: 0 or 1/(1-p)


_KERNELS = {torch.float32: "hashdrop_f32", torch.bfloat16: "hashdrop_bf16"}


@functools.lru_cache(maxsize=64)
def _scale(p, dtype):
    """1 / (1 - p) rounded to ``dtype`` as ``x.new_full`` rounds it in the torch version."""
    return float(torch.tensor(1.0 / (1.0 - p), dtype=dtype))


def _apply_kernel(x, p, keys):
    """``x`` times :func:`keep_mask` ``(x.shape, p, keys=keys)`` scaled by 1 / (1 - p), in one pass."""
    x = x.contiguous()
    out = torch.empty_like(x)
    scale = _scale(p, x.dtype)
    n = x.numel()
    getattr(native.library(), _KERNELS[x.dtype])(x.data_ptr(), out.data_ptr(), n, keys[0], keys[1],
                                                 round(p * 2**16) - 2**15, scale)
    return out


class _NativeDropout(torch.autograd.Function):
    """Hashed dropout whose backward remakes the mask from the two keys (nothing saved); its
    backward is not differentiated again (for ``create_graph``, set
    ``TASKBERT_NATIVE=0`` or ``TASKBERT_DROPOUT_MASKS=torch``)."""

    @staticmethod
    def forward(ctx, x, p, keys):
        ctx.p, ctx.keys = p, keys
        return _apply_kernel(x, p, keys)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        return _apply_kernel(grad, ctx.p, ctx.keys), None, None


class HashDropout(nn.Dropout):
    """``nn.Dropout`` (same ``p``, same scaling, no weights) with hashed masks."""

    def forward(self, x):
        return hash_dropout(x, self.p, self.training)


def _attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """The ``sdpa`` attention of ``transformers``, with hashed dropout on the probabilities
    when dropout is drawn (the same math ``sdpa`` runs on CPU with dropout)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if not (dropout and module.training) or query.device.type != "cpu" \
            or key.shape[1] != query.shape[1]:
        return sdpa_attention_forward(module, query, key, value, attention_mask,
                                      dropout=dropout, scaling=scaling, **kwargs)
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    # in place on the fresh product: no copy of the (batch, heads, q, k) scores
    scores = torch.matmul(query, key.transpose(2, 3)).mul_(scaling)
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores.masked_fill_(~attention_mask, torch.finfo(scores.dtype).min)
        else:   # out of place: a float mask may promote bf16 scores, as before
            scores = scores + attention_mask
    probs = hash_dropout(torch.softmax(scores, dim=-1), dropout)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), None


ATTENTION_NAME = "taskbert_hash_dropout"


def use_hash_dropout(model):
    """Swap :class:`HashDropout` in for every ``nn.Dropout`` of ``model`` and hashed dropout
    in for the attention probabilities of ``transformers`` models that use ``sdpa``.
    Weights and saved files do not change (the attention choice is not saved)."""
    swapped = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if type(child) is nn.Dropout:
                setattr(module, name, HashDropout(child.p, child.inplace).train(child.training))
                swapped += 1
    attention = 0
    for module in model.modules():
        config = getattr(module, "config", None)
        if hasattr(module, "set_attn_implementation") and \
                getattr(config, "_attn_implementation", None) == "sdpa":
            try:
                from transformers import AttentionInterface
                from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
                AttentionInterface.register(ATTENTION_NAME, _attention)
                AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)  # sdpa's masks
                module.set_attn_implementation(ATTENTION_NAME)
                attention += 1
            except (ImportError, ValueError, AttributeError, TypeError) as exc:
                log.info("hashed attention dropout not used: %s", exc)
    return swapped, attention
