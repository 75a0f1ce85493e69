"""``taskbert extract SPEC``: fill a feature task's caches without training."""

import json
import os

from taskbert import SpecError

from . import cache as fc
from .task import FeatureTask, store_stats


def add_extract_command(cli):
    """``taskbert extract SPEC``."""
    import click

    from taskbert import SET_HELP, friendly

    @cli.command()
    @click.argument("spec_file", type=click.Path(dir_okay=False))
    @click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
    @click.option("--split", "splits", multiple=True, type=click.Choice(["train", "validation", "test"]),
                  help="only this split (repeatable; default: every split the spec names)")
    @click.option("--jsonl", "jsonl_dir", type=click.Path(file_okay=False),
                  help="also write DIR/<split>.jsonl in the layout of google-research/bert extract_features.py")
    @friendly
    def extract(spec_file, overrides, splits, jsonl_dir):
        """Compute a feature task's frozen-encoder features once and keep them in the cache."""
        result = extract_features(spec_file, overrides, splits, jsonl_dir,
                                  log=lambda msg: click.echo(msg, err=True))
        click.echo(json.dumps(result, indent=2))


def extract_features(spec_file, overrides=(), splits=(), jsonl_dir=None, log=None):
    """What ``taskbert extract`` does: check the spec, load the encoder, fill (or reuse)
    the cache of each split, optionally export JSONL; return per-split statistics."""
    import torch

    from taskbert import (
        encode_split,
        load_encoder,
        load_spec,
        pick_device,
        prepare,
        registries,
    )

    spec = load_spec(spec_file, overrides)
    task_cls = registries().tasks.get(spec.task)
    if not issubclass(task_cls, FeatureTask):
        names = [n for n in registries().tasks.names() if issubclass(registries().tasks.get(n), FeatureTask)]
        raise SpecError(f"{spec.path}: task: {spec.task!r} has no frozen features to extract; "
                        f"use one of: {', '.join(names)}")
    available = spec.data.splits()
    for split in splits:
        if split not in available:
            raise SpecError(f"--split {split}: the spec sets no data.{split}; it has: {', '.join(available)}")
    prepared = prepare(spec)
    task = prepared.task
    if spec.train.threads:
        torch.set_num_threads(spec.train.threads)
    encoder, tokenizer = load_encoder(spec, prepared.source)
    task.configure(encoder)
    device = pick_device()
    encoder.to(device)
    rows = {s: encode_split(task, prepared.examples[s], tokenizer, spec.encoder.max_length, s)
            for s in (splits or available)}
    stats = {}
    for split, (store, seconds) in task.feature_stores(spec, encoder, tokenizer, rows, device, log).items():
        stats[split] = store_stats(split, store, seconds, log)
        if jsonl_dir:
            path = os.path.join(jsonl_dir, f"{split}.jsonl")
            fc.export_jsonl(path, store, rows[split], prepared.examples[split], task.unit_names,
                            task.layer_ids, task.num_layers)
            stats[split]["jsonl"] = path
    return stats
