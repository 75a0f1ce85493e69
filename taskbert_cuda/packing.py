"""Padding-free encoder passes: a batch's real tokens as one packed row.

A padded batch ``(rows, seq)`` spends every layer's matrix products on its pad tokens too.
Packed, the real tokens of all rows sit side by side in one row ``(1, tokens)``; the
position ids restart at every row's first token (after the pad id for RoBERTa's family, as
its ``create_position_ids_from_input_ids`` counts them) and the attention keeps each row to
itself: a variable-length kernel given the rows' cumulative lengths (``cu_seq_lens``), or
transformers' packed-sequence mask, which it builds from position ids that restart. The
encoder's output is scattered back to ``(rows, seq, hidden)`` with zeros at the pads, and
the pooler (where there is one) reads the rows' first tokens from there, so a head sees what
the padded pass gives it.

Only architectures whose packed pass is checked against the padded one
(``tests/cuda_plugin/test_packing.py``) are packed; any other runs padded.
"""

from typing import NamedTuple

import torch

#: architectures packed, and whether their positions start after the pad id
PACKABLE = {"bert": False, "electra": False, "roberta": True, "xlm-roberta": True, "camembert": True}

#: the flash-attn package's kernels: packed rows kept apart by ``cu_seq_lens``, fp16/bf16 only
#: (``taskbert_varlen``, :mod:`.varlen`, takes every precision)
FLASH_ATTENTION = ("flash_attention_2", "flash_attention_3")
#: ... and those that do so from transformers' packed-sequence mask (a (tokens, tokens) mask:
#: exact, but no faster; used only when packing is forced, TASKBERT_PADDING_FREE=on)
MASKED_ATTENTION = ("sdpa", "eager")


class Layout(NamedTuple):
    """Where a batch's real tokens go when packed (every tensor on the batch's device)."""

    index: torch.Tensor        # (tokens,) each real token's place in the flattened (rows * seq) batch
    positions: torch.Tensor    # (1, tokens) position ids, restarting at every row
    cu_seqlens: torch.Tensor   # (rows + 1,) int32 cumulative row lengths: 0, len0, len0 + len1, ...
    max_length: int            # the longest row


def layout(lengths, width, offset=0, device="cpu"):
    """The :class:`Layout` of right-padded rows of ``lengths`` real tokens in a batch ``width``
    wide; ``offset`` is added to every position id. Built on the host from Python ints and
    copied to ``device`` without waiting for it (no host synchronisation)."""
    counts = torch.tensor(lengths, dtype=torch.long)
    cu = torch.zeros(len(lengths) + 1, dtype=torch.long)
    torch.cumsum(counts, 0, out=cu[1:])
    row = torch.repeat_interleave(torch.arange(len(lengths)), counts)       # (tokens,) row of each token
    position = torch.arange(int(cu[-1])) - cu[:-1].repeat_interleave(counts)  # (tokens,) place in its row
    parts = (row * width + position, (position + offset)[None], cu.to(torch.int32))
    if torch.device(device).type == "cuda":
        parts = [p.pin_memory() for p in parts]
    index, positions, cu_seqlens = (p.to(device, non_blocking=True) for p in parts)
    return Layout(index, positions, cu_seqlens, max(lengths))


def batch_lengths(batch):
    """The real tokens per row: the collator's host-side ``row_lengths`` when the batch has them,
    else read off ``attention_mask`` (one wait for the device); None when the mask is not right
    padding (real tokens first), which packing cannot restore."""
    if batch.get("row_lengths") is not None:
        return list(batch["row_lengths"])
    mask = batch["attention_mask"]
    lengths = mask.sum(1)
    prefix = torch.arange(mask.shape[1], device=mask.device)[None] < lengths[:, None]
    lengths, right_padded = lengths.tolist(), bool((mask.bool() == prefix).all())
    return lengths if right_padded else None


def position_offset(config):
    """What the architecture's first position id is: ``pad_token_id + 1`` for RoBERTa's family."""
    return (config.pad_token_id or 0) + 1 if PACKABLE.get(config.model_type) else 0


def packed_call(encoder, batch, lengths):
    """The encoder's output for ``batch`` computed packed, as the padded call's
    ``last_hidden_state`` ``(rows, seq, hidden)`` (zeros at the pads) and ``pooler_output``."""
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    ids = batch["input_ids"]                                     # (rows, seq)
    rows, width = ids.shape
    lay = layout(lengths, width, position_offset(encoder.config), ids.device)

    def packed(t):                                               # (rows, seq) -> (1, tokens)
        return t.reshape(-1).index_select(0, lay.index)[None]

    kwargs = {"input_ids": packed(ids), "position_ids": lay.positions,
              "cu_seq_lens_q": lay.cu_seqlens, "cu_seq_lens_k": lay.cu_seqlens,
              "max_length_q": lay.max_length, "max_length_k": lay.max_length}
    if batch.get("token_type_ids") is not None:
        kwargs["token_type_ids"] = packed(batch["token_type_ids"])
    if encoder.config._attn_implementation == "taskbert_varlen":
        # A 4D mask is taken as it is (transformers' create_bidirectional_mask), so no packed
        # mask is derived from the position ids, a step that waits for the device; the kernel
        # keeps the rows apart by cu_seq_lens and never reads this placeholder.
        kwargs["attention_mask"] = torch.ones((1, 1, 1, 1), dtype=torch.bool, device=ids.device)
        kwargs["taskbert_layout"] = (lay.index, batch["attention_mask"])   # for varlen.repadded
    hidden = encoder(**kwargs).last_hidden_state[0]              # (tokens, hidden)
    padded = hidden.new_zeros(rows * width, hidden.shape[-1]).index_copy(0, lay.index, hidden)
    padded = padded.view(rows, width, -1)                        # (rows, seq, hidden)
    pooler = getattr(encoder, "pooler", None)
    return BaseModelOutputWithPooling(last_hidden_state=padded,
                                      pooler_output=pooler(padded) if pooler is not None else None)


def half_precision(device):
    """Whether the encoder's attention will see fp16/bf16 inputs on ``device`` (what the
    variable-length kernels take): under fp16/bf16 autocast."""
    return torch.is_autocast_enabled(device.type) and \
        torch.get_autocast_dtype(device.type) in (torch.float16, torch.bfloat16)


def can_pack(encoder, batch, forced):
    """Whether :func:`packed_call` computes what the padded pass does for this call: an
    architecture in :data:`PACKABLE` whose attention keeps packed rows apart:
    ``taskbert_varlen`` always (its kernel, or SDPA on the padded layout where the kernel
    cannot serve), ``flash_attention_2``/``3`` under fp16/bf16 (the only inputs they take),
    and with ``forced`` :data:`MASKED_ATTENTION` too."""
    config = getattr(encoder, "config", None)
    if config is None or config.model_type not in PACKABLE or batch["input_ids"].dim() != 2:
        return False
    impl = getattr(config, "_attn_implementation", None)
    if impl in MASKED_ATTENTION:
        return forced
    if impl == "taskbert_varlen":
        return True
    return impl in FLASH_ATTENTION and half_precision(batch["input_ids"].device)


def padding_free_pass(previous, forced=False):
    """An encoder pass that packs every batch :func:`can_pack` allows (and that has padding
    to remove), falling back to ``previous`` for the others."""
    def encoder_pass(encoder, batch, positions):
        if not can_pack(encoder, batch, forced):
            return previous(encoder, batch, positions)
        lengths = batch_lengths(batch)
        if lengths is None or min(lengths) == batch["input_ids"].shape[1]:   # no padding to drop
            return previous(encoder, batch, positions)
        return packed_call(encoder, batch, lengths)
    encoder_pass.taskbert_padding_free = True
    encoder_pass.previous = previous   # the pass it falls back to
    return encoder_pass
