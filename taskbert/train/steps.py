"""The step plan of a run: how many optimizer steps, and the warm-up, counted from the
training rows before the run folder is touched (docs/spec.md, "How steps are counted")."""

import math
import sys

from ..data.batching import row_groups, row_parts, train_batches
from ..errors import SpecError


def plan_steps(t, epoch_batches):
    """``(fewest batches in an epoch, total steps, warm-up steps)`` for the ``train:`` spec
    ``t``, where ``epoch_batches(epoch)`` is the number of batches of that epoch: always the
    same, unless whole examples of several rows are packed into batches (docs/spec.md, "How
    steps are counted")."""
    if t.max_steps:   # every epoch the run will start, so that the fewest covers them all
        counts, steps = [], []
        while sum(steps) < t.max_steps:
            counts.append(epoch_batches(len(counts)))
            steps.append(max(1, counts[-1] // t.grad_accum))
    else:
        counts = [epoch_batches(e) for e in range(max(1, math.ceil(t.epochs)))]
        steps = [max(1, n // t.grad_accum) for n in counts]
    if t.max_steps:
        total = t.max_steps
    elif len(set(steps)) == 1:
        total = max(1, math.ceil(t.epochs * steps[0]))
    else:   # whole epochs, then the started part of the last one
        whole = int(t.epochs)
        total = max(1, sum(steps[:whole]) + math.ceil((t.epochs - whole) * steps[-1]))
    warmup = int(t.warmup * total) if t.warmup < 1 else int(t.warmup)
    return min(counts), total, warmup


def check_steps(spec, task, rows):
    """The run's step plan (:func:`plan_steps`) for the training rows,
    checked: an optimizer step needs ``grad_accum`` batches of an epoch; a warm-up longer than
    the run never reaches the peak rate (said, not refused)."""
    t = spec.train
    lengths, groups, n_rows = [len(r["input_ids"]) for r in rows], row_groups(task, rows), len(rows)
    parts = row_parts(task, rows)
    if groups is None and parts is None:
        plan = plan_steps(t, lambda epoch: math.ceil(n_rows / t.batch_size))
    else:   # whole examples or tasks packed into batches: the count may differ between epochs
        plan = plan_steps(t, lambda epoch: len(train_batches(lengths, t.batch_size, t.seed, epoch, groups=groups,
                                                             parts=parts, mixing=(t.mixing, t.mixing_temperature))))
    batches, total, warmup = plan
    if t.grad_accum > batches:
        raise SpecError(f"{spec.path}: train.grad_accum: {t.grad_accum} is more than the {batches} "
                        f"batches of an epoch ({n_rows} training rows, batch_size {t.batch_size}); an "
                        f"optimizer step needs grad_accum batches: lower it or train.batch_size")
    if warmup > total:
        print(f"warning: train.warmup: {warmup} steps is longer than the run's {total}; the learning "
              f"rate never reaches train.lr and does not decay", file=sys.stderr)
    return plan
