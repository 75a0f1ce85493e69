"""Masked-LM masking as BERT does it: choose 15% of the tokens (never special tokens), then
replace 80% of the chosen by [MASK], 10% by a random token and keep 10%.

One function does the choosing for both modes: ``static`` masks are drawn once while the
pretraining data is written, ``dynamic`` masks are drawn per batch in the task's
``forward`` from a NumPy generator seeded by torch's RNG (so ``--resume`` replays them).
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VocabTables:
    """What masking needs to know about a tokenizer's vocabulary, as lookup arrays."""

    special: np.ndarray        # (vocab,) bool: special tokens, never chosen
    continuation: np.ndarray   # (vocab,) bool: a piece that continues the previous word
    random_ids: np.ndarray     # ids a "random token" replacement draws from (no specials)
    mask_id: int
    cls_id: int
    sep_id: int


def vocab_tables(tokenizer, vocab_size):
    """Build :class:`VocabTables` for ``tokenizer`` over ids ``0..vocab_size-1``.

    Word boundaries: WordPiece marks continuations with its prefix (``##``); SentencePiece
    and byte-level BPE mark word starts (``▁``, ``Ġ``) instead.
    """
    size = max(vocab_size, len(tokenizer))
    tokens = tokenizer.convert_ids_to_tokens(list(range(size)))
    special = np.zeros(size, dtype=bool)
    special[[i for i in tokenizer.all_special_ids if i is not None and i < size]] = True
    model = tokenizer.backend_tokenizer.model
    prefix = getattr(model, "continuing_subword_prefix", None)
    if prefix:
        continuation = np.array([bool(t) and t.startswith(prefix) for t in tokens])
    else:
        continuation = np.array([bool(t) and not t.startswith(("\u2581", "\u0120")) for t in tokens])
    random_ids = np.flatnonzero(~special[:vocab_size])
    return VocabTables(special, continuation, random_ids, tokenizer.mask_token_id,
                       tokenizer.cls_token_id, tokenizer.sep_token_id)


def word_groups(ids, tables):
    """Candidate positions of ``ids`` grouped into words: a group is a word start and the
    continuation pieces that follow it. Special tokens are in no group."""
    cand = np.flatnonzero(~tables.special[ids])
    if not len(cand):
        return []
    prev_special = np.ones(len(cand), dtype=bool)
    inner = cand > 0
    prev_special[inner] = tables.special[ids[cand[inner] - 1]]
    starts = ~tables.continuation[ids[cand]] | prev_special
    starts[0] = True
    return np.split(cand, np.flatnonzero(starts)[1:])


def choose_masks(ids, rng, tables, prob=0.15, max_predictions=None, whole_word=False,
                 mask_share=0.8, random_share=0.1):
    """Choose and replace tokens of one sequence.

    ``ids``: 1-D int array (the unmasked sequence with its special tokens). Returns
    ``(positions, inputs)``: sorted chosen positions and the token each gets as input
    ([MASK], a random id, or itself); the labels are ``ids[positions]``. The number chosen
    is ``round(prob * non-special tokens)`` (at least 1, at most ``max_predictions``);
    with ``whole_word`` every piece of a chosen word is chosen, and a word that would
    overshoot the number is skipped (as in BERT's ``create_pretraining_data.py``).
    """
    ids = np.asarray(ids, dtype=np.int64)
    groups = word_groups(ids, tables)
    n_cand = sum(len(g) for g in groups)
    if n_cand == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    k = max(1, int(round(n_cand * prob)))
    if max_predictions:
        k = min(k, max_predictions)
    if not whole_word:
        cand = np.concatenate(groups)
        positions = np.sort(rng.choice(cand, size=min(k, n_cand), replace=False))
    else:
        picked, total = [], 0
        for g in rng.permutation(len(groups)):
            if total >= k:
                break
            if total + len(groups[g]) > k:
                continue
            picked.append(groups[g])
            total += len(groups[g])
        positions = np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)
    inputs = ids[positions].copy()
    draw = rng.random(len(positions))
    inputs[draw < mask_share] = tables.mask_id
    rand = (draw >= mask_share) & (draw < mask_share + random_share)
    inputs[rand] = tables.random_ids[rng.integers(0, len(tables.random_ids), int(rand.sum()))]
    return positions, inputs


def apply_masks(input_ids, masks):
    """Masked inputs and labels for a padded batch.

    ``input_ids``: (batch, seq) long tensor; ``masks``: per row ``(positions, inputs)``.
    Returns ``(inputs, labels)``, labels -100 where nothing is predicted.
    """
    import torch

    inputs = input_ids.clone()
    labels = torch.full_like(input_ids, -100)
    rows = np.concatenate([np.full(len(p), i) for i, (p, _) in enumerate(masks)]) if masks else []
    if len(rows):
        r = torch.as_tensor(rows, dtype=torch.long, device=input_ids.device)
        c = torch.as_tensor(np.concatenate([p for p, _ in masks]), dtype=torch.long, device=input_ids.device)
        v = torch.as_tensor(np.concatenate([x for _, x in masks]), dtype=torch.long, device=input_ids.device)
        labels[r, c] = input_ids[r, c]
        inputs[r, c] = v
    return inputs, labels
