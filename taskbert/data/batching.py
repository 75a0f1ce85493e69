"""Length-bucketed batches with dynamic padding.

Padding decides speed on a CPU: a batch padded to its own longest row, built from rows
of similar length, wastes little compute. Training batches come from random chunks of
the data sorted by length inside each chunk, then shuffled, so each epoch differs but
stays reproducible from (seed, epoch) alone — which is what exact resume needs.
"""

import random

import torch


def train_batches(lengths, batch_size, seed, epoch, chunk_batches=50):
    """Index lists for one training epoch: shuffled, bucketed by length."""
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch_size * chunk_batches
    batches = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start:start + chunk], key=lambda i: lengths[i])
        batches.extend(part[i:i + batch_size] for i in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


def eval_batches(lengths, batch_size):
    """Index lists for evaluation: sorted longest first (memory peaks early, then
    shrinks), no shuffling."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def collate(rows, pad_id, pad_fields):
    """Pad and stack a list of feature rows into a batch dict.

    ``input_ids`` pads with ``pad_id``, ``token_type_ids`` with 0, fields in
    ``pad_fields`` with their value; ``attention_mask`` is built here. Ints and floats
    become tensors; other values stay Python lists.
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
            fill = 0 if key == "token_type_ids" else pad_fields[key]
            sample = next((r[key] for r in rows if len(r[key])), [0])
            dtype = torch.float if isinstance(sample[0], float) else torch.long
            t = torch.full((n, width), fill, dtype=dtype)
            for i, r in enumerate(rows):
                t[i, :len(r[key])] = torch.tensor(r[key], dtype=dtype)
            batch[key] = t
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            batch[key] = [r[key] for r in rows]
        elif isinstance(value, int):
            batch[key] = torch.tensor([r[key] for r in rows], dtype=torch.long)
        else:
            batch[key] = torch.tensor([r[key] for r in rows], dtype=torch.float)
    return batch


def to_device(batch, device):
    """Move the tensors of a batch to ``device`` (lists stay)."""
    if str(device) == "cpu":
        return batch
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
            for k, v in batch.items()}
