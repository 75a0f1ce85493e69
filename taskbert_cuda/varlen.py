"""``taskbert_varlen``: torch's own variable-length FlashAttention for packed rows.

torch (2.9 and newer) ships ``torch.nn.attention.varlen.varlen_attn``, FlashAttention's
variable-length kernel, on CUDA: no ``flash-attn`` package to build. This module registers it
with transformers as the attention implementation ``taskbert_varlen``: a call that carries
``cu_seq_lens_q`` (a packed pass, :mod:`.packing`) runs the kernel in fp16/bf16 without
attention dropout, and otherwise (fp32: ``predict``, ``serve``; attention dropout in training;
a torch without the kernel) runs SDPA on the padded layout for the attention alone
(:func:`repadded`), so the layer's other work still skips the pads, as ``taskbert_cpu``'s
packing does on a CPU. Any other call (a padded batch) runs transformers' SDPA attention with
SDPA's masks, exactly as ``sdpa`` does.
"""

import torch

NAME = "taskbert_varlen"


def varlen_kernel():
    """torch's ``varlen_attn``, or None where this torch has none."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn


def per_row_attention(q, k, v, cu_q, cu_k, max_q, max_k, scale=None):
    """What ``varlen_attn`` computes, row by row with SDPA (``q``: ``(tokens, heads, d)``):
    the plain computation the kernel is checked against, and its stand-in on a CPU in tests."""
    out = torch.empty_like(q)
    for a, b in zip(cu_q[:-1].tolist(), cu_q[1:].tolist()):
        part = [t[a:b].transpose(0, 1) for t in (q, k, v)]   # (heads, row tokens, d)
        out[a:b] = torch.nn.functional.scaled_dot_product_attention(*part, scale=scale).transpose(0, 1)
    return out


#: the kernel packed calls run in fp16/bf16 without dropout (tests on a CPU put
#: :func:`per_row_attention` here); the others run :func:`repadded`
kernel = varlen_kernel()


def attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """transformers' attention interface: ``query`` ``(batch, heads, seq, head_dim)``, the
    output ``(batch, seq, heads, head_dim)``."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    cu = kwargs.get("cu_seq_lens_q")
    if cu is None:   # a padded call: SDPA as it is
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    if kernel is None or dropout or query.dtype not in (torch.float16, torch.bfloat16):
        return repadded(module, query, key, value, dropout, scaling, kwargs["taskbert_layout"])
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))   # (1, heads, tokens, d) -> (tokens, heads, d)
    out = kernel(q, k, v, cu, kwargs.get("cu_seq_lens_k", cu), kwargs["max_length_q"],
                 kwargs.get("max_length_k", kwargs["max_length_q"]), scale=scaling)
    return out[None], None                                            # (1, tokens, heads, d)


def repadded(module, query, key, value, dropout, scaling, layout):
    """A packed call the kernel cannot take (fp32, attention dropout, no kernel): SDPA on the
    padded layout, as a padded call computes it, while every other part of the layer stays on
    the real tokens. ``layout``: ``(index, padding mask (rows, seq))`` of the packed batch."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    index, padding = layout
    rows, width = padding.shape
    heads, dim = query.shape[1], query.shape[3]

    def spread(t):   # (1, heads, tokens, d) -> (rows, heads, seq, d), zeros at the pads
        flat = t[0].transpose(0, 1)
        return flat.new_zeros(rows * width, heads, dim).index_copy(0, index, flat) \
            .view(rows, width, heads, dim).transpose(1, 2)

    out, _ = sdpa_attention_forward(module, spread(query), spread(key), spread(value),
                                    padding.bool()[:, None, None, :], dropout=dropout, scaling=scaling)
    return out.reshape(rows * width, heads, dim).index_select(0, index)[None], None   # (1, tokens, heads, d)


def mask(*args, attention_mask=None, **kwargs):
    """The attention mask for ``taskbert_varlen``: SDPA's for a padded batch; none for a packed
    one (its rows are kept apart by ``cu_seq_lens``, not by a (tokens, tokens) mask)."""
    from transformers.masking_utils import sdpa_mask

    if attention_mask is None:
        return None
    return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


def use_varlen_attention(model):
    """Switch every transformers model in ``model`` that uses ``sdpa`` to ``taskbert_varlen``;
    returns how many were switched. Weights and saved files do not change (the attention
    choice is not saved)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, attention)
    AttentionMaskInterface.register(NAME, mask)
    switched = 0
    for module in model.modules():
        config = getattr(module, "config", None)
        if hasattr(module, "set_attn_implementation") and getattr(config, "_attn_implementation", None) == "sdpa":
            module.set_attn_implementation(NAME)
            switched += 1
    return switched
