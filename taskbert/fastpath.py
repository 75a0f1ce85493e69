"""Training fast paths that keep every result's meaning: measured costs, cut.

Three costs measured in a MiniLM-L6 training step on a 2-core CPU (batch 32, about 27 tokens
a row; ``bench/README.md`` has the figures):

* **Dropout masks** took 9% of the step: torch's CPU ``bernoulli_`` draws from one
  Mersenne-Twister stream on one core. :class:`HashDropout` draws the same Bernoulli(1 - p)
  keep mask from a counter-based hash (``lowbias32`` of the element index, keyed by two
  numbers drawn from torch's generator, two 16-bit uniforms per hash) computed as vectorised
  int32 tensor ops on every core, and scales kept values by 1 / (1 - p) as ``nn.Dropout`` does. The keys come from torch's
  default generator, so ``torch.manual_seed`` and a checkpoint's RNG state still fix every
  mask (exact resume holds). :func:`use_hash_dropout` swaps it in for every ``nn.Dropout``
  of a model and for the dropout on attention probabilities (through a registered
  ``transformers`` attention function that falls back to ``sdpa`` whenever no dropout is
  drawn). Only on CPU: CUDA's dropout is already counter-based and fast.
* **First-token tasks** (a label from the [CLS] vector) use one position of the last layer's
  output. :func:`encode_first_token` runs the last layer's query, attention output and
  feed-forward for that position only (keys and values still see every token), so the last
  layer costs about 2/12 of its full price. Outputs and gradients are those of the full
  encoder; it is checked against the full encoder once per model (in eval mode) and an
  encoder it does not fit simply runs whole.
* **Freed memory** above 32 MB goes back to the kernel by default, so a re-allocated
  gradient page-faults every step: :func:`keep_freed_memory` (8-9% of a step).
"""

import logging

import torch
from torch import nn

log = logging.getLogger(__name__)

# ------------------------------------------------------------------ hashed dropout
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
        keys = torch.randint(0, 2**31 - 1, (2,)).tolist()
    x = _INDEX[:half] + keys[0]
    _mix(x)
    x ^= keys[1]        # a second key, spread by one more multiply: two calls whose index
    x *= _M1            # ranges overlap under the first key still get unrelated masks
    threshold = round(p * 2**16) - 2**15     # P(u >= threshold) = 1 - p for uniform int16 u
    return (x.view(torch.int16)[:n] >= threshold).view(shape).to(device)


def hash_dropout(x, p, training=True):
    """``nn.functional.dropout`` with the mask from :func:`keep_mask`."""
    if not training or p == 0:
        return x
    if p >= 1:
        return x * 0
    scale = keep_mask(x.shape, p, x.device).to(x.dtype).mul_(1.0 / (1.0 - p))
    return x * scale


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
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling   # (batch, heads, q, k)
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
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


MMAP_THRESHOLD = 256 << 20


def keep_freed_memory():
    """Let glibc's malloc reuse freed blocks of up to 256 MB instead of unmapping them.

    By default glibc maps every block above 32 MB fresh and unmaps it on free, so a training
    step that frees and re-allocates such blocks (the embedding table's gradient is 47 MB for
    MiniLM) pays page faults and kernel zeroing each time: 8-9% of a MiniLM step on a 2-core
    CPU, measured. Process-wide and idempotent; on Linux with glibc only, and not when the
    user set ``MALLOC_MMAP_THRESHOLD_`` or ``GLIBC_TUNABLES`` (their choice wins). Returns
    whether it was applied."""
    import ctypes
    import os
    import sys

    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ \
            or "GLIBC_TUNABLES" in os.environ:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3    # mallopt parameter numbers (malloc.h)
        return bool(libc.mallopt(m_mmap_threshold, MMAP_THRESHOLD)) and \
            bool(libc.mallopt(m_trim_threshold, 2 * MMAP_THRESHOLD))
    except (OSError, AttributeError):   # not glibc
        return False


def apply_dropout_setting(model, setting, device):
    """``train.dropout_masks``: swap hashed dropout in for ``hash``, and for ``auto`` on CPU."""
    if setting == "torch" or (setting == "auto" and device.type != "cpu"):
        return
    use_hash_dropout(model)


# ------------------------------------------------------------------ first-token encoding
class FirstTokenOutput(dict):
    """What a Hugging Face encoder returns, for position 0 of the last layer only."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _parts(encoder):
    """The pieces the first-token path needs, or None when ``encoder`` is not BERT-shaped."""
    config = getattr(encoder, "config", None)
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if config is None or not layers or getattr(config, "is_decoder", False) \
            or getattr(config, "add_cross_attention", False) \
            or getattr(config, "position_embedding_type", "absolute") != "absolute":
        return None
    last = layers[-1]
    try:
        attn = last.attention.self
        (attn.query, attn.key, attn.value, attn.attention_head_size, attn.scaling,  # noqa: B018
         last.attention.output.dense, last.intermediate.dense, last.output.dense, encoder.embeddings)
    except AttributeError:
        return None
    return encoder, layers, last, config


def _run(encoder, layers, last, config, input_ids, attention_mask, token_type_ids):
    from transformers.masking_utils import create_bidirectional_mask
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    kwargs = {"input_ids": input_ids}
    if token_type_ids is not None:
        kwargs["token_type_ids"] = token_type_ids
    hidden = encoder.embeddings(**kwargs)
    mask = create_bidirectional_mask(config=config, inputs_embeds=hidden, attention_mask=attention_mask)
    for layer in layers[:-1]:
        hidden = layer(hidden, mask)
    attn = last.attention.self
    heads = (hidden.shape[0], -1, attn.num_attention_heads, attn.attention_head_size)
    query = attn.query(hidden[:, :1]).view(*heads).transpose(1, 2)     # (batch, heads, 1, d)
    key = attn.key(hidden).view(*heads).transpose(1, 2)
    value = attn.value(hidden).view(*heads).transpose(1, 2)
    attention = ALL_ATTENTION_FUNCTIONS.get_interface(config._attn_implementation, None)
    if attention is None:
        raise LookupError(f"attention {config._attn_implementation!r}")
    first_mask = mask[:, :, :1] if mask is not None else None
    context, _ = attention(attn, query, key, value, first_mask,
                           dropout=attn.dropout.p if attn.training else 0.0, scaling=attn.scaling)
    context = context.reshape(hidden.shape[0], 1, -1)
    out = last.attention.output(context, hidden[:, :1])            # (batch, 1, hidden)
    out = last.output(last.intermediate(out), out)
    pooler = getattr(encoder, "pooler", None)
    return FirstTokenOutput(last_hidden_state=out, pooler_output=pooler(out) if pooler is not None else None)


def encode_first_token(encoder, input_ids, attention_mask, token_type_ids=None):
    """``encoder(...)`` for a task that reads only position 0 (``last_hidden_state`` is
    ``(batch, 1, hidden)``; ``pooler_output`` as usual). An encoder this path does not fit,
    or whose result differs from the full pass on the first batch, runs whole."""
    usable = getattr(encoder, "_taskbert_first_token", None)
    if usable is None:   # first call for this encoder: decide once
        parts = _parts(encoder)
        usable = parts is not None and _agrees(parts, input_ids, attention_mask, token_type_ids)
        encoder._taskbert_first_token = usable
    if not usable:
        return encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
    return _run(*_parts(encoder), input_ids, attention_mask, token_type_ids)


def _agrees(parts, input_ids, attention_mask, token_type_ids):
    """Compare the first-token path with the full encoder on two rows, in eval mode."""
    encoder = parts[0]
    was_training = encoder.training
    rows = slice(0, 2)
    tt = token_type_ids[rows] if token_type_ids is not None else None
    try:
        encoder.eval()
        # in fp32 even under autocast, so bf16 rounding cannot make the paths look different
        with torch.no_grad(), torch.autocast(input_ids.device.type, enabled=False):
            full = encoder(input_ids=input_ids[rows], attention_mask=attention_mask[rows], token_type_ids=tt)
            fast = _run(*parts, input_ids[rows], attention_mask[rows], tt)
        tol = 1e-4 if fast.last_hidden_state.dtype == torch.float32 else 3e-2  # bf16/fp16 weights
        same = torch.allclose(full.last_hidden_state[:, :1].float(), fast.last_hidden_state.float(),
                              atol=tol, rtol=10 * tol)
        if same and getattr(full, "pooler_output", None) is not None:
            same = fast.pooler_output is not None and torch.allclose(
                full.pooler_output.float(), fast.pooler_output.float(), atol=tol, rtol=10 * tol)
    except Exception as exc:  # an encoder of another shape: use the full pass
        log.info("first-token path not used for %s: %s", type(encoder).__name__, exc)
        return False
    finally:
        encoder.train(was_training)
    if not same:
        log.info("first-token path not used for %s: it differs from the full pass", type(encoder).__name__)
    return same
