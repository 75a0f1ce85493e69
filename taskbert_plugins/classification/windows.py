"""Long documents for one-label tasks: overlapping windows, pooled into one prediction.

With ``task_options.long_inputs: windows`` a text longer than ``encoder.max_length`` becomes
several windows, each ``[CLS] piece [SEP]`` (a pair: ``[CLS] short [SEP] piece [SEP]``, the
longer text windowed and the shorter one repeated in every window). Three knobs, in tokens:

* what a window holds is ``max_length`` minus the special tokens (and, for a pair, minus
  the shorter text); that is the *budget*;
* ``window_overlap``: tokens two consecutive windows share. Window ``k`` starts at token
  ``k * (budget - window_overlap)`` of the text; the last one ends at the text's end;
* ``max_windows``: the most windows of one document. A document that needs more keeps
  ``max_windows`` of them spread evenly from its first to its last window (both kept); the
  text only the dropped windows held is not read (``taskbert debug data`` counts it).

The windows of one document go through the encoder in one batch (the task sets
``whole_examples``), and the head pools them (``window_pooling``) into one prediction per document,
trained end to end: ``mean`` or ``max`` of the windows' logits, or ``attention``, a learned
softmax over the windows' [CLS] vectors whose weighted sum the classifier reads. The loss is
a mean over documents, however many windows each has. Pooling works on a ``(rows, rows)``
mask of rows that share a document, so every row leaves the head with its document's
logits (the core's per-row contract holds, and the ONNX graph keeps the pooling inside).
"""

from dataclasses import dataclass, field
from typing import Literal, Optional

import torch
from torch import nn

from taskbert import SpecError


@dataclass(frozen=True)
class LongInputOptions:
    """The ``task_options`` for long inputs, shared by ``sentence_classification`` and
    ``sentence_pair``."""

    long_inputs: Literal["truncate", "windows"] = field(default="truncate", metadata={
        "help": "truncate: cut a text at encoder.max_length; windows: read all of it in overlapping "
                "windows pooled into one prediction"})
    max_windows: int = field(default=8, metadata={"min": 1, "predict": True, "help":
        "with windows: the most windows of one document; a longer one keeps this many, spread "
        "evenly from its first to its last window"})
    window_overlap: Optional[int] = field(default=None, metadata={"min": 0, "predict": True, "help":
        "with windows: tokens two consecutive windows share (not the step between them); "
        "default: a quarter of what a window holds"})
    window_pooling: Literal["mean", "max", "attention"] = field(default="mean", metadata={"help":
        "with windows: mean or max of the windows' logits, or attention: a learned weighting "
        "of the windows' [CLS] vectors"})


def budget_overlap(options, max_length, specials, where="task_options.window_overlap"):
    """``(budget, overlap)``: text tokens a window holds and those consecutive windows share;
    SpecError when the overlap leaves no step."""
    budget = max_length - specials
    if budget < 1:
        raise SpecError(f"encoder.max_length: {max_length} leaves no room for text beside "
                        f"{specials} special tokens")
    overlap = options.window_overlap
    overlap = budget // 4 if overlap is None else overlap
    if overlap >= budget:
        raise SpecError(f"{where}: {overlap} must be smaller than the {budget} text tokens a window "
                        f"holds (encoder.max_length {max_length} minus {specials} special tokens)")
    return budget, overlap


def window_count(n_tokens, budget, overlap):
    """How many windows cover ``n_tokens`` text tokens (at least one)."""
    return 1 + -(-max(0, n_tokens - budget) // (budget - overlap))


def kept_windows(n_windows, max_windows):
    """Indices of the windows kept: all of them, or ``max_windows`` spread evenly with the
    first and the last among them."""
    if n_windows <= max_windows:
        return list(range(n_windows))
    if max_windows == 1:
        return [0]
    return sorted({round(k * (n_windows - 1) / (max_windows - 1)) for k in range(max_windows)})


def tokens_read(n_tokens, budget, overlap, kept):
    """Text tokens inside the kept windows (window ``k`` covers ``[k*step, k*step+budget)``)."""
    step, covered, end = budget - overlap, 0, 0
    for k in kept:
        start, stop = max(k * step, end), min(n_tokens, k * step + budget)
        covered += max(0, stop - start)
        end = max(end, stop)
    return covered


def window_rows(enc, n_examples, max_windows):
    """Per example, the indices into ``enc`` of the overflow windows kept (see :func:`kept_windows`)."""
    found = [[] for _ in range(n_examples)]
    for w, i in enumerate(enc["overflow_to_sample_mapping"]):
        found[i].append(w)
    return [[ws[k] for k in kept_windows(len(ws), max_windows)] for ws in found]


# ------------------------------------------------------------------- pooling
def same_document(batch):
    """``(rows, rows)`` bool: row i and row j are windows of one document."""
    index = batch["example_index"]
    return index[:, None] == index[None, :]


def pool_logits(logits, same, mode):
    """Each row's document logits: the mean or the max over the document's windows."""
    if mode == "mean":
        weights = same.to(logits.dtype)
        return (weights @ logits) / weights.sum(1, keepdim=True)   # (rows, classes)
    spread = logits[None, :, :].expand(same.size(0), -1, -1)          # (rows, rows, classes)
    return spread.masked_fill(~same[:, :, None], float("-inf")).max(1).values


class WindowAttention(nn.Module):
    """A learned score per window vector; each row gets the softmax-weighted sum of its
    document's window vectors. Zero-initialised, so training starts from their mean."""

    def __init__(self, hidden_size):
        super().__init__()
        self.score = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)

    def forward(self, vectors, same):
        scores = self.score(vectors).squeeze(-1)                          # (rows,)
        scores = scores[None, :].masked_fill(~same, float("-inf"))        # (rows, rows)
        return torch.softmax(scores.float(), dim=1).to(vectors.dtype) @ vectors   # (rows, hidden)


def document_loss(logits, batch, same, regression=False):
    """The loss as a mean over documents: each window row's loss weighted by one over its
    document's window count (every row of a document carries its logits and label)."""
    per_window = same.sum(1).to(torch.float)                               # (rows,)
    if regression:
        losses = (logits.squeeze(-1).float() - batch["label"].float()) ** 2
        labelled = torch.ones_like(losses)
    else:
        losses = nn.functional.cross_entropy(logits.float(), batch["label"], ignore_index=-100,
                                             reduction="none")
        labelled = (batch["label"] != -100).float()
    weights = labelled / per_window
    return (losses * weights).sum() / weights.sum().clamp(min=1e-12)


def windowed_output(head, batch, vectors, classify, window_logits=None):
    """The head output of windowed rows: ``{"logits"}`` (each row its document's), with the
    per-document loss when labelled. ``classify`` turns (rows, hidden) window vectors into
    logits: the attention-pooled ``vectors`` for ``attention``; for ``mean``/``max``, the
    per-window logits are ``window_logits()`` when given, else ``classify(vectors)``."""
    same = same_document(batch)
    if head.pooling == "attention":
        logits = classify(head.window_attention(vectors, same))
    else:
        logits = pool_logits(window_logits() if window_logits else classify(vectors), same, head.pooling)
    out = {"logits": logits}
    if "label" in batch:
        out["loss"] = document_loss(logits, batch, same, head.regression)
    return out


# ------------------------------------------------------------------ encoding
def encode_texts(tokenizer, texts, max_length, options):
    """Windows of single texts: the tokenizer's encoding (``stride`` = the overlap) and, per
    text, the indices of its kept windows."""
    _, overlap = budget_overlap(options, max_length, tokenizer.num_special_tokens_to_add(pair=False))
    enc = tokenizer(texts, truncation=True, max_length=max_length, stride=overlap,
                    return_overflowing_tokens=True, return_attention_mask=False)
    return enc, window_rows(enc, len(texts), options.max_windows)


def pair_budget(tokenizer, max_length, options):
    """``(short_cap, budget, overlap)`` for pairs: the shorter text keeps at most ``short_cap``
    tokens (half of what a window holds), the longer one gets at least ``budget`` a window."""
    room = max_length - tokenizer.num_special_tokens_to_add(pair=True)
    short_cap = room // 2
    budget, overlap = budget_overlap(options, max_length - short_cap,
                                     tokenizer.num_special_tokens_to_add(pair=True))
    return short_cap, budget, overlap


def cut_to_tokens(tokenizer, texts, cap):
    """``texts`` cut at a token boundary so each has at most ``cap`` tokens (unchanged if shorter)."""
    texts = list(texts)
    for attempt in range(3):   # a cut text re-tokenised may rarely give a token more: cut again
        enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        over = [i for i, ids in enumerate(enc["input_ids"]) if len(ids) > cap]
        if not over:
            return texts
        for i in over:
            texts[i] = texts[i][:enc["offset_mapping"][i][max(0, cap - 1 - attempt)][1]]
    return texts


def encode_pairs(tokenizer, texts_a, texts_b, max_length, options):
    """Windows of pairs: the longer text windowed, the shorter (cut to half a window when
    longer than that) repeated in each. Returns, per pair in order, its windows as
    ``(input_ids, token_type_ids or None)``."""
    short_cap, _, overlap = pair_budget(tokenizer, max_length, options)
    len_a = [len(ids) for ids in tokenizer(texts_a, add_special_tokens=False, verbose=False)["input_ids"]]
    len_b = [len(ids) for ids in tokenizer(texts_b, add_special_tokens=False, verbose=False)["input_ids"]]
    a_long = [la >= lb for la, lb in zip(len_a, len_b)]
    short = cut_to_tokens(tokenizer, [b if long else a for a, b, long in zip(texts_a, texts_b, a_long)], short_cap)
    windows = [None] * len(texts_a)
    for first_long in (True, False):
        picked = [i for i, long in enumerate(a_long) if long == first_long]
        if not picked:
            continue
        long_texts = [texts_a[i] if first_long else texts_b[i] for i in picked]
        firsts = long_texts if first_long else [short[i] for i in picked]
        seconds = [short[i] for i in picked] if first_long else long_texts
        enc = tokenizer(firsts, seconds, truncation="only_first" if first_long else "only_second",
                        max_length=max_length, stride=overlap, return_overflowing_tokens=True,
                        return_attention_mask=False)
        for j, kept in enumerate(window_rows(enc, len(picked), options.max_windows)):
            types = enc.get("token_type_ids")
            windows[picked[j]] = [(enc["input_ids"][w], types[w] if types is not None else None) for w in kept]
    return windows


def token_cuts(counts, budget, overlap, max_windows):
    """``taskbert debug data``'s truncation figures for texts of ``counts`` tokens read in
    windows: tokens the dropped windows alone held, and those truncation would have cut."""
    total = sum(counts)
    read = sum(tokens_read(n, budget, overlap, kept_windows(window_count(n, budget, overlap), max_windows))
               for n in counts)
    return {"tokens left out by max_windows": (total - read, total),
            "tokens cut by max_length with long_inputs: truncate": (sum(max(0, n - budget) for n in counts), total)}
