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


def train_batches(lengths, batch_size, seed, epoch, chunk_batches=50, groups=None, parts=None,
                  mixing=("proportional", 2.0)):
    """Index lists for one training epoch: shuffled, bucketed by length; with ``groups``,
    every group's rows share a batch (see :func:`units`); with ``parts`` (a part id per row:
    the tasks of a multi-task run), no batch mixes parts and ``mixing`` orders them (see
    :func:`mix_parts`). A pure function of its arguments, so a resumed run rebuilds the same
    epoch."""
    if parts is not None:
        return mix_parts(lengths, batch_size, seed, epoch, groups, parts, *mixing)
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


def _split_parts(parts):
    """``{part: [row indices]}`` in order of first appearance."""
    found = {}
    for i, p in enumerate(parts):
        found.setdefault(p, []).append(i)
    return found


def _part_batches(lengths, batch_size, seed, epoch, groups, idx):
    """:func:`train_batches` over the rows ``idx`` only, as global row indices."""
    local = train_batches([lengths[i] for i in idx], batch_size, seed, epoch,
                          groups=None if groups is None else [groups[i] for i in idx])
    return [[idx[j] for j in b] for b in local]


def mix_parts(lengths, batch_size, seed, epoch, groups, parts, strategy, temperature=2.0):
    """One epoch of a multi-task run: each part's own batches (as :func:`train_batches`
    makes them), in an order that says which part each slot trains. An epoch has as many
    batches as all parts together have.

    * ``proportional``: every part's batches once, shuffled together (a part trains in
      proportion to its size);
    * ``round_robin``: the parts in turn, one batch each;
    * ``temperature``: each slot draws a part with odds ``batches ** (1 / temperature)`` (1:
      proportional in expectation; larger evens the parts out).

    A part that runs out of batches within the epoch starts over with a new shuffle of its
    own (so small tasks repeat). A pure function of its arguments, as exact resume needs."""
    rows = _split_parts(parts)
    names = list(rows)
    streams = {p: _part_batches(lengths, batch_size, seed, epoch * 1000, groups, rows[p]) for p in names}
    total = sum(len(b) for b in streams.values())
    rng = random.Random((seed * 1_000_003 + epoch) * 31 + 7)
    if strategy == "proportional":
        order = [p for p in names for _ in streams[p]]
        rng.shuffle(order)
    elif strategy == "round_robin":
        order = [names[i % len(names)] for i in range(total)]
    elif strategy == "temperature":
        odds = [len(streams[p]) ** (1.0 / temperature) for p in names]
        order = rng.choices(names, weights=odds, k=total)
    else:
        raise RunError(f"train.mixing: unknown strategy {strategy!r}; allowed: proportional, round_robin, temperature")
    taken, cycle, batches = {p: 0 for p in names}, {p: 0 for p in names}, []
    for p in order:
        if taken[p] == len(streams[p]):   # this part starts over, newly shuffled
            cycle[p] += 1
            streams[p] = _part_batches(lengths, batch_size, seed, epoch * 1000 + cycle[p], groups, rows[p])
            taken[p] = 0
        batches.append(streams[p][taken[p]])
        taken[p] += 1
    return batches


def eval_batches(lengths, batch_size, groups=None, parts=None):
    """Index lists for evaluation: sorted longest first (memory peaks early, then
    shrinks), no shuffling; with ``groups``, every group's rows share a batch; with
    ``parts``, no batch mixes parts (each part's batches in turn)."""
    if parts is not None:
        out = []
        for idx in _split_parts(parts).values():
            local = eval_batches([lengths[i] for i in idx], batch_size,
                                 None if groups is None else [groups[i] for i in idx])
            out.extend([idx[j] for j in b] for b in local)
        return out
    order = sorted(units(range(len(lengths)), groups), key=lambda u: -max(lengths[i] for i in u))
    return pack(order, batch_size)


def row_groups(task, rows):
    """The group id of each row when ``task.whole_examples`` (its ``example_index``), else None
    (a multi-task run's :class:`~taskbert.multitask.MultiTask` says per member)."""
    if not task.whole_examples:
        return None
    own = getattr(task, "row_groups", None)
    return own(rows) if own is not None else [r["example_index"] for r in rows]


def batch_fields(task, rows):
    """``(pad_fields, vector_fields)`` to collate ``rows`` with: the task's (a multi-task
    run's: the member's whose rows they are)."""
    own = getattr(task, "batch_fields", None)
    return own(rows) if own is not None else (task.pad_fields, task.vector_fields)


def row_parts(task, rows):
    """The part (task) of each row of a multi-task run (:class:`taskbert.multitask.MultiTask`
    has ``row_parts``), else None: one part."""
    parts_of = getattr(task, "row_parts", None)
    return parts_of(rows) if parts_of is not None else None


def pad_id(tokenizer):
    """The id that pads ``input_ids``: the tokenizer's pad token, else 0."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def collate(rows, pad_id, pad_fields, vector_fields=()):
    """Pad and stack a list of feature rows into a batch dict.

    ``input_ids`` pads with ``pad_id``, ``token_type_ids`` with 0, fields in
    ``pad_fields`` (per-token lists) with their value; ``attention_mask`` is built here, and
    ``row_lengths``, each row's real tokens as a Python list (read without waiting for a
    device). Ints and floats become tensors, and so do the fixed-size lists of numbers named in
    ``vector_fields`` (``(rows, size)``); other values stay Python lists.
    """
    width = max(len(r["input_ids"]) for r in rows)
    n = len(rows)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    for i, r in enumerate(rows):
        input_ids[i, :len(r["input_ids"])] = torch.tensor(r["input_ids"], dtype=torch.long)
        attention[i, :len(r["input_ids"])] = 1
    batch = {"input_ids": input_ids, "attention_mask": attention,
             "row_lengths": [len(r["input_ids"]) for r in rows]}
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
    """Move the tensors of a batch to ``device`` (lists stay); on a CPU the batch as it is.

    To CUDA each tensor is first copied into page-locked (pinned) host memory: only from there
    is ``non_blocking=True`` an asynchronous copy that lets the host collate the next batch
    while the GPU works (from pageable memory the copy waits for the host). torch's pinned
    allocator keeps the host buffer until the copy is done. Other devices copy directly.
    """
    if str(device) == "cpu":
        return batch
    pin = torch.device(device).type == "cuda"
    return {k: (v.pin_memory() if pin else v).to(device, non_blocking=True) if torch.is_tensor(v) else v
            for k, v in batch.items()}


class EvalLoader:
    """The one way feature rows become batches outside training: evaluation, ``predict``,
    ``serve``, ``export``'s ONNX runs and the feature cache all iterate one of these.

    Iterating yields ``(row indices, batch)`` in :func:`eval_batches` order (longest first),
    each batch collated with the task's padding and moved to ``device``. ``part=(rank, world)``
    keeps every ``world``-th batch from ``rank`` (a distributed evaluation's share);
    ``groups`` keeps rows together as :func:`eval_batches` does (see :func:`row_groups`), and
    ``parts`` keeps each batch to one part (see :func:`row_parts`), and ``fields(rows)``, when
    given, says how to collate each batch (see :func:`batch_fields`).
    """

    def __init__(self, rows, batch_size, pad_id, pad_fields=None, vector_fields=(), device=None, part=None,
                 groups=None, parts=None, fields=None):
        self.rows, self.pad_id, self.device, self.fields = rows, pad_id, device, fields
        self.pad_fields, self.vector_fields = dict(pad_fields or {}), tuple(vector_fields)
        self.batches = eval_batches([len(r["input_ids"]) for r in rows], batch_size, groups, parts)
        if part is not None:
            rank, world = part
            self.batches = self.batches[rank::world]

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        for idx in self.batches:
            rows = [self.rows[i] for i in idx]
            pad, vector = self.fields(rows) if self.fields else (self.pad_fields, self.vector_fields)
            batch = collate(rows, self.pad_id, pad, vector)
            yield idx, batch if self.device is None else to_device(batch, self.device)
