"""Running a model over feature rows: length-sorted batches, dynamic padding, results
put back in row order; shared out across the processes of a distributed run."""

import torch
from tqdm.auto import tqdm

from .data.batching import EvalLoader, batch_fields, row_groups, row_parts, units


def run_inference(model, task, rows, batch_size, pad_id, device, amp_dtype=None, desc="predicting",
                  world=None):
    """Run ``model`` over ``rows`` in length-sorted batches; return (per-row results in
    row order, mean loss or None). With a distributed ``world`` each rank runs every W-th
    batch and the results are gathered by row index, so no row is run or counted twice."""
    results = [None] * len(rows)
    shared = world is not None and world.enabled
    groups = row_groups(task, rows)   # a task's whole examples share a batch, and count once
    loader = EvalLoader(rows, batch_size, pad_id, task.pad_fields, task.vector_fields, device,
                        part=(world.rank, world.world) if shared else None, groups=groups,
                        parts=row_parts(task, rows), fields=lambda rs: batch_fields(task, rs))
    total_loss, n_loss = 0.0, 0
    with torch.inference_mode():
        for idx, batch in tqdm(loader, desc=desc, unit="batch", leave=False, dynamic_ncols=True,
                               disable=None if world is None or world.is_main else True):
            batch = task.prepare_batch(batch, training=False)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                out = model(batch)
            loss = out.get("loss")   # the head's, when the rows carry labels
            if loss is not None and torch.isfinite(loss):
                n = len(units(idx, groups))
                total_loss += loss.item() * n
                n_loss += n
            for i, res in zip(idx, task.collect(out, batch)):
                results[i] = res
    if shared:
        parts = world.gather(([(i, results[i]) for idx in loader.batches for i in idx], total_loss, n_loss))
        total_loss, n_loss = 0.0, 0
        for pairs, part_loss, part_n in parts:
            for i, res in pairs:
                results[i] = res
            total_loss += part_loss
            n_loss += part_n
    return results, (total_loss / n_loss if n_loss else None)
