"""Encoder passes for tasks that read only some positions: padding-free, last layer in part.

Two savings, both exact:

* **No padding in per-token work.** Linear layers, layer norms, dropout and GELU treat every
  token alike, so they run on the stack of real tokens (``(tokens, hidden)``) instead of the
  padded ``(batch, seq, hidden)``; only attention sees the padded layout (its keys, queries
  and values are scattered into it and its output gathered back). Length-sorted training
  batches hold little padding, prediction batches more.
* **The last layer only where it is read.** Every position of the last layer's output costs
  a query projection, attention, the attention output projection and the feed-forward block:
  about 10/12 of the layer's linear FLOPs; its keys and values are still needed at every
  token. :func:`encode_first_token` runs that part for position 0 only ([CLS]
  classification, sentence pairs; ``last_hidden_state`` is ``(batch, 1, hidden)``);
  :func:`encode_positions` for the positions of a ``(batch, seq)`` bool mask (a tagger
  trains on each word's first subtoken; ``last_hidden_state`` is ``(batch, seq, hidden)``, zeros where nothing was asked).

Query, key and value run as one product against their stacked weights (one GEMM three
times as wide runs nearer the CPU's peak, forward and backward, and the stack is scattered
into the padded layout once instead of three times): :func:`_projected_heads`.

Under bf16/fp16 autocast on a CPU the stack is rounded up to a multiple of 64 tokens, and the
sequence and the last layer's query slots to multiples of 8 (:func:`shape_multiple`), so oneDNN
sees few distinct matrix shapes.

Outputs and gradients at the positions asked for are those of the full encoder (in training
the dropout masks have other shapes, so they are other draws of the same distribution). Each
path is checked against the full encoder once per model, in eval mode and fp32, and an encoder
it does not fit (not one of the admitted architectures, relative positions, a decoder)
simply runs whole. Figures are in ``bench/RESULTS.md``.
"""

import logging

import torch

log = logging.getLogger(__name__)


class FirstTokenOutput(dict):
    """What a Hugging Face encoder returns, from a pass that ran the last layer in part."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


# Architectures whose model forward is BERT's: embeddings (which make their own positions:
# from 0 in BERT and ELECTRA, from padding_idx + 1 in the RoBERTa family), then a stack of
# BertLayer-shaped layers over a bidirectional mask. Others (DistilBERT, ALBERT, DeBERTa,
# MPNet, ModernBERT, ...) run whole: a look-alike module tree is not enough to be admitted.
_ADMITTED = frozenset({"bert", "roberta", "xlm-roberta", "camembert", "electra"})


def _parts(encoder):
    """The pieces these paths need, or None when ``encoder`` is not one of the admitted
    BERT-shaped architectures (``_ADMITTED``)."""
    config = getattr(encoder, "config", None)
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if config is None or not layers or getattr(config, "model_type", None) not in _ADMITTED \
            or getattr(config, "is_decoder", False) \
            or getattr(config, "add_cross_attention", False) \
            or getattr(config, "position_embedding_type", "absolute") != "absolute" \
            or hasattr(encoder, "embeddings_project"):   # ELECTRA with embedding size != hidden
        return None
    last = layers[-1]
    try:
        attn = last.attention.self
        (attn.query, attn.key, attn.value, attn.attention_head_size, attn.scaling,  # noqa: B018
         last.attention.output.dense, last.intermediate.dense, last.output.dense, encoder.embeddings)
    except AttributeError:
        return None
    return encoder, layers, last, config


def _attention_fn(config):
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    attention = ALL_ATTENTION_FUNCTIONS.get_interface(config._attn_implementation, None)
    if attention is None:
        raise LookupError(f"attention {config._attn_implementation!r}")
    return attention


def shape_multiple(device):
    """1, or the multiple that the number of stacked tokens is rounded up to.

    oneDNN (bf16/fp16 autocast on a CPU) builds and caches a kernel for each new matrix shape;
    the stack of real tokens has a new length almost every batch, so each batch paid for new
    kernels, while a padded step's shapes repeat. Rounding the stack up to a multiple of 64 (a few padding positions more, computed as the
    full encoder computes them, masked out of attention, never read) keeps the shapes few; so
    does padding the sequence (attention's keys) and the last layer's query slots to multiples
    of 8: with a few thousand (slots, keys) pairs the kernel cache (1,024 entries) thrashed.
    fp32 on a CPU (MKL) and GPUs have no such cost and keep the exact count. Decided once per
    encoder pass and handed down.
    """
    if device.type != "cpu" or not torch.is_autocast_enabled("cpu"):
        return 1
    return 64 if torch.get_autocast_dtype("cpu") in (torch.bfloat16, torch.float16) else 1


_COLUMNS = 8   # sequence and query-slot multiple while the stack is rounded (see shape_multiple)


def _round_columns(config, multiple, input_ids, *tensors):
    """``input_ids`` and other ``(batch, seq)`` tensors (None passes through) with columns
    appended so that seq is a multiple of ``_COLUMNS`` when ``multiple`` > 1 (attention's
    shapes: see :func:`shape_multiple`), never past the model's positions. The new ids are the
    pad id (so position schemes that count real tokens, RoBERTa's, see padding there), the other
    tensors get zeros: a zero in the attention mask makes the new columns padding."""
    if multiple == 1:
        return (input_ids, *tensors)
    seq = input_ids.shape[1]
    extra = -seq % _COLUMNS
    if not extra or seq + extra > _positions(config):
        return (input_ids, *tensors)
    pad = getattr(config, "pad_token_id", None) or 0
    return (torch.nn.functional.pad(input_ids, (0, extra), value=pad),
            *(None if t is None else torch.nn.functional.pad(t, (0, extra)) for t in tensors))


def _positions(config):
    """How many tokens a row may hold: RoBERTa-style positions start after ``padding_idx``."""
    total = getattr(config, "max_position_embeddings", 1 << 30)
    if getattr(config, "model_type", None) in ("roberta", "xlm-roberta", "camembert"):
        total -= (getattr(config, "pad_token_id", None) or 0) + 1
    return total


def _round_rows(x, multiple):
    """``x`` with zero rows appended up to a multiple of ``multiple`` rows (callers drop them)."""
    extra = -x.shape[0] % multiple
    return torch.cat([x, x.new_zeros(extra, *x.shape[1:])]) if extra else x


class _Packing:
    """Where the real (non-pad) tokens of a ``(batch, seq)`` batch sit: ``rows``, ``cols`` of
    each, in row-major order. Per-token work (linear layers, layer norms, dropout, GELU: all but
    attention) runs on the ``(tokens, hidden)`` stack of real tokens, so no FLOP is spent on
    padding; attention alone sees the padded ``(batch, heads, seq, d)`` layout.

    With ``multiple`` > 1 the stack also holds the first padding positions (row-major) that make
    its length a multiple of it (see :func:`shape_multiple`): attention masks them as keys, and
    no caller reads them."""

    def __init__(self, attention_mask, multiple=1):
        self.shape = tuple(attention_mask.shape)
        stacked = attention_mask.bool()
        extra = -int(stacked.sum()) % multiple if multiple > 1 else 0   # no extra sync in fp32
        if extra:
            stacked = stacked.clone()
            stacked.view(-1)[(~stacked).view(-1).nonzero(as_tuple=True)[0][:extra]] = True
        self.rows, self.cols = stacked.nonzero(as_tuple=True)              # (tokens,) each
        self.dense = self.rows.numel() == self.shape[0] * self.shape[1]     # no padding at all

    def padded(self, x):
        """``(tokens, dim)`` -> ``(batch, seq, dim)``, zeros at the padding."""
        if self.dense:
            return x.view(*self.shape, -1)
        return x.new_zeros(*self.shape, x.shape[-1]).index_put_((self.rows, self.cols), x)

    def packed(self, x):
        """``(batch, seq, dim)`` -> ``(tokens, dim)``."""
        return x.reshape(-1, x.shape[-1]) if self.dense else x[self.rows, self.cols]


def _heads(attn, x):
    """``(batch, seq, hidden)`` -> ``(batch, heads, seq, d)``."""
    return x.view(x.shape[0], x.shape[1], -1, attn.attention_head_size).transpose(1, 2)


def _global_module_hooks():
    """Whether hooks registered for every module (``register_module_forward_hook`` and its
    kin) are set: then the whole encoder runs (:func:`_hooked`), so they fire as usual."""
    m = torch.nn.modules.module
    return any(getattr(m, name, None) for name in (
        "_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
        "_global_backward_pre_hooks"))


def _projected_heads(attn, pack, hidden, names, multiple):
    """The ``names`` projections (of ``query``, ``key``, ``value``) of the stack ``hidden``
    ``(tokens, hidden)``, each as ``(batch, heads, seq, d)``. Plain linear layers run as one
    product against their stacked weights (one larger GEMM runs nearer a CPU's peak than
    three small ones, in the backward too; the scatter into the padded layout runs once).
    Run one by one: layers with a forward of their own (``taskbert_cpu.packed``) or hooks of their
    own (forward or backward; global hooks make the whole encoder run, :func:`_hooked`), other
    kinds of layer, and everything while the stack is rounded (CPU bf16: no faster there, and
    oneDNN's kernels for the new shapes took more memory)."""
    layers = [getattr(attn, name) for name in names]
    if multiple == 1 and all(
            type(f) is torch.nn.Linear and f.bias is not None and "forward" not in vars(f)
            and not (f._forward_hooks or f._forward_pre_hooks or f._backward_hooks or f._backward_pre_hooks)
            for f in layers):
        both = torch.nn.functional.linear(hidden, torch.cat([f.weight for f in layers]),
                                          torch.cat([f.bias for f in layers]))
        parts = pack.padded(both).split([f.out_features for f in layers], dim=-1)
    else:
        parts = [pack.padded(f(hidden)) for f in layers]
    return tuple(_heads(attn, x) for x in parts)


def _attend(attn, config, query, key, value, mask):
    """Attention of ``(batch, heads, q, d)`` queries over ``(batch, heads, seq, d)`` keys and
    values; ``(batch, q, hidden)``. A bidirectional mask has the same row for every query."""
    q = query.shape[2]
    if mask is not None and mask.shape[2] != q:
        mask = mask[:, :, :1].expand(-1, -1, q, -1)
    context, _ = _attention_fn(config)(attn, query, key, value, mask,
                                       dropout=attn.dropout.p if attn.training else 0.0,
                                       scaling=attn.scaling)
    return context.reshape(query.shape[0], q, -1)


def _below_last(encoder, layers, config, input_ids, attention_mask, token_type_ids, multiple):
    """Embeddings and every layer but the last, on the real tokens only:
    ``(hidden (tokens, hidden), packing, mask)``."""
    from transformers.masking_utils import create_bidirectional_mask

    pack = _Packing(attention_mask, multiple)
    # The embeddings run on the padded (batch, seq) batch, as in the stock model, so each
    # architecture makes its own position ids (RoBERTa's count from padding_idx + 1); only
    # the per-token work after them runs on the stack of real tokens.
    kwargs = {"input_ids": input_ids, "token_type_ids": token_type_ids}
    hidden = pack.packed(encoder.embeddings(**{k: v for k, v in kwargs.items() if v is not None}))
    mask = create_bidirectional_mask(config=config, inputs_embeds=hidden.new_empty(*pack.shape, 1),
                                     attention_mask=attention_mask)
    for layer in layers[:-1]:
        attn = layer.attention.self
        query, key, value = _projected_heads(attn, pack, hidden, ("query", "key", "value"), multiple)
        context = pack.packed(_attend(attn, config, query, key, value, mask))   # (tokens, hidden)
        out = layer.attention.output(context, hidden)
        hidden = layer.output(layer.intermediate(out), out)
    return hidden, pack, mask


def _last_layer(last, config, hidden, pack, mask, chosen, multiple):
    """The last layer at the packed tokens ``chosen`` (indices, ``(n,)``) against keys and
    values of every token: ``(n, hidden)``."""
    attn = last.attention.self
    key, value = _projected_heads(attn, pack, hidden, ("key", "value"), multiple)
    rows = pack.rows[chosen]
    n = rows.numel()
    # the i-th chosen token of a row is query i of that row
    first_of_row = torch.searchsorted(rows, rows, right=False)
    slot = torch.arange(n, device=rows.device) - first_of_row
    k = int(slot.max()) + 1
    k += -k % _COLUMNS if multiple > 1 else 0   # few query shapes for oneDNN (zero queries)
    picked = _round_rows(hidden[chosen], multiple)                     # (n, hidden), rounded up
    asked = attn.query(picked)[:n]
    query = asked.new_zeros(pack.shape[0], k, asked.shape[-1]).index_put_((rows, slot), asked)
    context = _attend(attn, config, _heads(attn, query), key, value, mask)[rows, slot]   # (n, hidden)
    out = last.attention.output(_round_rows(context, multiple), picked)
    return last.output(last.intermediate(out), out)[:n]


def _run_first(encoder, layers, last, config, input_ids, attention_mask, token_type_ids):
    multiple = shape_multiple(input_ids.device)
    input_ids, attention_mask, token_type_ids = _round_columns(
        config, multiple, input_ids, attention_mask, token_type_ids)
    hidden, pack, mask = _below_last(encoder, layers, config, input_ids, attention_mask, token_type_ids, multiple)
    chosen = (pack.cols == 0).nonzero(as_tuple=True)[0]               # (batch,): each row's [CLS]
    out = _last_layer(last, config, hidden, pack, mask, chosen, multiple)[:, None]   # (batch, 1, hidden)
    pooler = getattr(encoder, "pooler", None)
    return FirstTokenOutput(last_hidden_state=out, pooler_output=pooler(out) if pooler is not None else None)


def _run_positions(encoder, layers, last, config, input_ids, attention_mask, token_type_ids, needed):
    seq, multiple = input_ids.shape[1], shape_multiple(input_ids.device)
    input_ids, attention_mask, token_type_ids, needed = _round_columns(
        config, multiple, input_ids, attention_mask, token_type_ids, needed)
    hidden, pack, mask = _below_last(encoder, layers, config, input_ids, attention_mask, token_type_ids, multiple)
    chosen = needed[pack.rows, pack.cols].nonzero(as_tuple=True)[0]   # (n,) packed indices
    if chosen.numel():
        out = _last_layer(last, config, hidden, pack, mask, chosen, multiple)
        full = out.new_zeros(*pack.shape, out.shape[-1]).index_put_((pack.rows[chosen], pack.cols[chosen]), out)
    else:
        full = hidden.new_zeros(*pack.shape, hidden.shape[-1])        # (batch, seq, hidden)
    full = full[:, :seq]                                               # the columns asked for
    pooler = getattr(encoder, "pooler", None)
    return FirstTokenOutput(last_hidden_state=full,
                            pooler_output=pooler(full[:, :1]) if pooler is not None and bool(needed[:, 0].all()) else None)


def _tracing():
    """True under ``torch.export``, ``torch.compile`` or ``torch.jit.trace``: the packing's
    shapes depend on the data, so a traced graph (an ONNX export) takes the whole encoder."""
    compiler = getattr(torch, "compiler", None)
    return bool((compiler is not None and compiler.is_compiling()) or torch.jit.is_tracing())


def _hooked(encoder):
    """Whether a hook is set that these paths would pass by: a global module hook, or one on
    the encoder, its layer stack, a layer, its attention or self-attention (modules whose own
    forward these paths replace; the sub-modules they call still run as modules)."""
    if _global_module_hooks():
        return True
    stack = getattr(encoder, "encoder", None)
    modules = [encoder, stack]
    for layer in getattr(stack, "layer", ()):
        attention = getattr(layer, "attention", None)
        modules += [layer, attention, getattr(attention, "self", None)]
    return any(m is not None and (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
                                  or m._backward_pre_hooks) for m in modules)


def _usable(encoder, attribute, check):
    """Whether a path fits ``encoder``: decided on the first call, kept on the module."""
    usable = getattr(encoder, attribute, None)
    if usable is None:
        parts = _parts(encoder)
        usable = parts is not None and _agrees(parts, check)
        setattr(encoder, attribute, usable)
    return usable


def encode_first_token(encoder, input_ids, attention_mask, token_type_ids=None):
    """``encoder(...)`` for a task that reads only position 0 (``last_hidden_state`` is
    ``(batch, 1, hidden)``; ``pooler_output`` as usual). An encoder this path does not fit,
    or whose result differs from the full pass on the first batch, or one with a hook these
    paths would pass by (:func:`_hooked`), runs whole."""
    if _tracing() or _hooked(encoder) \
            or not _usable(encoder, "_taskbert_first_token", (input_ids, attention_mask, token_type_ids, None)) \
            or not bool(attention_mask[:, 0].all()):   # a row without [CLS] at 0 (left padding)
        return encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
    return _run_first(*_parts(encoder), input_ids, attention_mask, token_type_ids)


def encode_positions(encoder, input_ids, attention_mask, needed, token_type_ids=None):
    """``encoder(...)`` for a task that reads the positions where ``needed`` ``(batch, seq)``
    is True: ``last_hidden_state`` is ``(batch, seq, hidden)``, exact there and zero elsewhere;
    ``pooler_output`` only when every row asks for position 0. An encoder this path does not
    fit, or one with a hook it would pass by, runs whole (then every position is filled)."""
    needed = needed.bool() & attention_mask.bool()
    if _tracing() or _hooked(encoder) \
            or not _usable(encoder, "_taskbert_positions", (input_ids, attention_mask, token_type_ids, needed)):
        return encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
    return _run_positions(*_parts(encoder), input_ids, attention_mask, token_type_ids, needed)


def _check_batch(encoder, input_ids, attention_mask, token_type_ids):
    """Three rows that exercise every part of a path: the batch's longest and shortest rows,
    and the longest cut to half its real length with the rest padded (pad ids, mask 0), so
    the check always sees padding, whatever the first batch holds."""
    lengths = attention_mask.sum(dim=1)
    long, short = int(lengths.argmax()), int(lengths.argmin())
    ids, mask = input_ids[[long, short, long]].clone(), attention_mask[[long, short, long]].clone()
    types = None if token_type_ids is None else token_type_ids[[long, short, long]].clone()
    keep = max(1, int(lengths[long]) // 2)
    cut = torch.arange(ids.shape[1], device=ids.device) >= keep
    cut &= mask[2].bool()          # only real tokens become padding (left padding stays as is)
    mask[2, cut] = 0
    ids[2, cut] = getattr(encoder.config, "pad_token_id", None) or 0
    if types is not None:
        types[2, cut] = 0
    return ids, mask, types


def _agrees(parts, check):
    """Compare the path with the full encoder in eval mode and fp32, on :func:`_check_batch`'s
    rows of the first batch (``check`` holds the batch and, for :func:`encode_positions`, the
    mask; None means position 0), at every real position they hold."""
    input_ids, attention_mask, token_type_ids, needed = check
    encoder = parts[0]
    was_training = encoder.training
    try:
        ids, mask, tt = _check_batch(encoder, input_ids, attention_mask, token_type_ids)
        encoder.eval()
        # in fp32 even under autocast, so bf16 rounding cannot make the paths look different
        with torch.no_grad(), torch.autocast(input_ids.device.type, enabled=False):
            full = encoder(input_ids=ids, attention_mask=mask, token_type_ids=tt)
            if needed is None:
                fast = _run_first(*parts, ids, mask, tt)
                want, got = full.last_hidden_state[:, :1], fast.last_hidden_state
            else:   # every real position of the rows, so the check cannot be empty
                every = mask.bool()
                fast = _run_positions(*parts, ids, mask, tt, every)
                want, got = full.last_hidden_state[every], fast.last_hidden_state[every]
        tol = 1e-4 if got.dtype == torch.float32 else 3e-2  # bf16/fp16 weights
        same = torch.allclose(want.float(), got.float(), atol=tol, rtol=10 * tol)
        if same and needed is None and getattr(full, "pooler_output", None) is not None:
            same = fast.pooler_output is not None and torch.allclose(
                full.pooler_output.float(), fast.pooler_output.float(), atol=tol, rtol=10 * tol)
    except Exception as exc:  # an encoder of another shape: use the full pass
        log.info("partial last-layer path not used for %s: %s", type(encoder).__name__, exc)
        return False
    finally:
        encoder.train(was_training)
    if not same:
        log.info("partial last-layer path not used for %s: it differs from the full pass", type(encoder).__name__)
    return same
