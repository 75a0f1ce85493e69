"""Length-bucketed batches with dynamic padding.

Padding decides speed on a CPU: a batch padded to its own longest row, built from rows
of similar length, wastes little compute. Training batches come from random chunks of
the data sorted by length inside each chunk, then shuffled, so each epoch differs but
stays reproducible from (seed, epoch) alone — which is what exact resume needs.
"""

import random

import torch

from ..errors import RunError


def units(indices, groups=None):
    """``indices`` as the units a batch is made of: one list per row, or with ``groups`` (a
    group id per row, e.g. the example a window belongs to) one list per group, its rows in
    order, the groups in order of first appearance."""
    if groups is None:
        return [[i] for i in indices]
    found = {}
    for i in indices:
        found.setdefault(groups[i], []).append(i)
    return list(found.values())


def pack(parts, batch_size):
    """Consecutive units into batches of at most ``batch_size`` rows; a unit with more rows
    than that gets a batch of its own (rows of one unit are never split). Single-row units
    give ``batch_size`` rows a batch, the last one ragged."""
    batches, current = [], []
    for part in parts:
        if current and len(current) + len(part) > batch_size:
            batches.append(current)
            current = []
        current = current + part
    if current:
        batches.append(current)
    return batches


def train_batches(lengths, batch_size, seed, epoch, chunk_batches=50, groups=None):
    """Index lists for one training epoch: shuffled, bucketed by length; with ``groups``,
    every group's rows share a batch (see :func:`units`). A pure function of its arguments,
    so a resumed run rebuilds the same epoch."""
    rng = random.Random(seed * 1_000_003 + epoch)
    order = units(range(len(lengths)), groups)
    rng.shuffle(order)
    chunk = batch_size * chunk_batches
    batches = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start:start + chunk], key=lambda u: max(lengths[i] for i in u))
        batches.extend(pack(part, batch_size))
    rng.shuffle(batches)
    return batches


def eval_batches(lengths, batch_size, groups=None):
    """Index lists for evaluation: sorted longest first (memory peaks early, then
    shrinks), no shuffling; with ``groups``, every group's rows share a batch."""
    order = sorted(units(range(len(lengths)), groups), key=lambda u: -max(lengths[i] for i in u))
    return pack(order, batch_size)


def row_groups(task, rows):
    """The group id of each row when ``task.whole_examples`` (its ``example_index``), else None."""
    return [r["example_index"] for r in rows] if task.whole_examples else None


def pad_id(tokenizer):
    """The id that pads ``input_ids``: the tokenizer's pad token, else 0."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def collate(rows, pad_id, pad_fields, vector_fields=()):
    """Pad and stack a list of feature rows into a batch dict.

    ``input_ids`` pads with ``pad_id``, ``token_type_ids`` with 0, fields in
    ``pad_fields`` (per-token lists) with their value; ``attention_mask`` is built here.
    Ints and floats become tensors, and so do the fixed-size lists of numbers named in
    ``vector_fields`` (``(rows, size)``); other values stay Python lists.
    """
    width = max(len(r["input_ids"]) for r in rows)
    n = len(rows)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    for i, r in enumerate(rows):
        input_ids[i, :len(r["input_ids"])] = torch.tensor(r["input_ids"], dtype=torch.long)
        attention[i, :len(r["input_ids"])] = 1
    batch = {"input_ids": input_ids, "attention_mask": attention}
    for key, value in rows[0].items():
        if key == "input_ids":
            continue
        if key == "token_type_ids" or key in pad_fields:
            if not isinstance(value, (list, tuple)):
                raise RunError(f"feature field {key!r} is in the task's pad_fields (per-token lists, "
                               f"padded per batch) but a row holds {type(value).__name__} {value!r}: "
                               f"a per-example number needs no pad_fields entry")
            fill = 0 if key == "token_type_ids" else pad_fields[key]
            sample = next((r[key] for r in rows if len(r[key])), [0])
            dtype = torch.float if isinstance(sample[0], float) else torch.long
            t = torch.full((n, width), fill, dtype=dtype)
            for i, r in enumerate(rows):
                t[i, :len(r[key])] = torch.tensor(r[key], dtype=dtype)
            batch[key] = t
        elif key in vector_fields:
            batch[key] = _stack_vectors(key, [r[key] for r in rows])
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            batch[key] = [r[key] for r in rows]
        elif isinstance(value, int):
            batch[key] = torch.tensor([r[key] for r in rows], dtype=torch.long)
        else:
            batch[key] = torch.tensor([r[key] for r in rows], dtype=torch.float)
    return batch


def _stack_vectors(key, values):
    sizes = {len(v) if isinstance(v, (list, tuple)) else None for v in values}
    if None in sizes or len(sizes) != 1:
        raise RunError(f"feature field {key!r} is in the task's vector_fields (one list of numbers of "
                       f"the same length per row) but rows hold sizes {sorted(sizes, key=str)}")
    floats = any(isinstance(x, float) for v in values for x in v)
    return torch.tensor(values, dtype=torch.float if floats else torch.long)


def to_device(batch, device):
    """Move the tensors of a batch to ``device`` (lists stay)."""
    if str(device) == "cpu":
        return batch
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
            for k, v in batch.items()}


class EvalLoader:
    """The one way feature rows become batches outside training: evaluation, ``predict``,
    ``serve``, ``export``'s ONNX runs and the feature cache all iterate one of these.

    Iterating yields ``(row indices, batch)`` in :func:`eval_batches` order (longest first),
    each batch collated with the task's padding and moved to ``device``. ``part=(rank, world)``
    keeps every ``world``-th batch from ``rank`` (a distributed evaluation's share);
    ``groups`` keeps rows together as :func:`eval_batches` does (see :func:`row_groups`).
    """

    def __init__(self, rows, batch_size, pad_id, pad_fields=None, vector_fields=(), device=None, part=None,
                 groups=None):
        self.rows, self.pad_id, self.device = rows, pad_id, device
        self.pad_fields, self.vector_fields = dict(pad_fields or {}), tuple(vector_fields)
        self.batches = eval_batches([len(r["input_ids"]) for r in rows], batch_size, groups)
        if part is not None:
            rank, world = part
            self.batches = self.batches[rank::world]

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        for idx in self.batches:
            batch = collate([self.rows[i] for i in idx], self.pad_id, self.pad_fields, self.vector_fields)
            yield idx, batch if self.device is None else to_device(batch, self.device)
