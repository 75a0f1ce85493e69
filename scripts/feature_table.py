"""Reproduce the shape of the BERT paper's Table 7 (feature-based use vs fine-tuning) with
the packaged MiniLM on WSJ part-of-speech tags.

    python scripts/prepare_data.py wsj
    python scripts/feature_table.py                    # about 10 minutes on a 2-core CPU

1. ``task_specs/features-wsj-pos.yaml`` once per layer choice: the encoder stays frozen,
   features are extracted once per split and layer set into the feature cache (sum and
   concat of the last four share one), and only the head trains;
2. the fine-tuning spec (default ``task_specs/pos-wsj.yaml``, ``token_classification``);
3. a timing: one encoder pass over the training split against 10 epochs of head training
   on its cached features (forward, loss, backward, optimizer step; no evaluation or
   checkpoint writes), in the same process, alternating three times, fastest of each.

Prints a Markdown table and writes it with every number to ``OUT/table.md`` and
``OUT/table.json``. Extra ``--set`` / ``--finetune-set`` overrides reach the specs.
"""

import argparse
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS = (("embeddings", "Embeddings"), ("second_to_last", "Second-to-last hidden"),
        ("last", "Last hidden"), ("sum_last_four", "Sum last four hidden"),
        ("concat_last_four", "Concat last four hidden"), ("scalar_mix", "Scalar mix of all 7"))


def run_spec_file(path, overrides):
    """Run a spec (``taskbert run --overwrite``); return (spec, final metrics, wall seconds,
    the run's features.json or None)."""
    from taskbert.run import execute
    from taskbert.config.spec import load_spec

    spec = load_spec(path, overrides)
    t0 = time.perf_counter()
    metrics = execute(spec, overwrite=True)
    wall = time.perf_counter() - t0
    stats_file = os.path.join(spec.output, "features.json")
    stats = json.load(open(stats_file, encoding="utf-8")) if os.path.exists(stats_file) else None
    return spec, metrics, wall, stats


def time_pass_and_head(path, overrides, epochs=10, repeats=3):
    """Seconds of one encoder pass over the training split, and of ``epochs`` epochs of
    head training on the features that pass cached; also the encoder calls made meanwhile.

    Each is timed ``repeats`` times, alternating, and the fastest kept: on a CPU shared
    with other jobs the minimum is the least disturbed measurement of each.
    """
    import torch

    from taskbert.data.batching import collate, train_batches
    from taskbert.data.splits import encode_split
    from taskbert.run import load_encoder, prepare
    from taskbert.config.spec import load_spec
    from taskbert.task import TaskModel
    from taskbert.train.optim import build_optimizer, clipped_step, seed_everything
    from taskbert_plugins.features import cache as fc

    spec = load_spec(path, overrides)
    if spec.train.threads:
        torch.set_num_threads(spec.train.threads)
    task, examples = (p := prepare(spec)).task, p.examples
    seed_everything(spec.train.seed)
    encoder, tokenizer = load_encoder(spec, p.source)
    model = TaskModel(encoder, task.build_head(encoder), train_encoder=task.trainable_encoder())
    rows = encode_split(task, examples["train"], tokenizer, spec.encoder.max_length)
    pad_id = tokenizer.pad_token_id or 0
    t = spec.train
    lengths = [len(r["input_ids"]) for r in rows]
    passes, heads, calls = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(repeats):
            store, seconds = fc.build_store(os.path.join(tmp, f"cache{k}"), {"timing": k}, encoder, rows,
                                            task.layer_ids, task.pool_mode(), task.options.extract_batch_size,
                                            pad_id, task.pad_fields, torch.device("cpu"), task.options.cache_dtype)
            passes.append(seconds)
            for i, row in enumerate(rows):
                row["features"] = store.row(i)
            handle = encoder.register_forward_hook(lambda *_: calls.append(1))
            optimizer = build_optimizer(model, t.lr, t.weight_decay, torch.device("cpu"))
            model.train()
            t0 = time.perf_counter()
            for epoch in range(epochs):   # the trainer's step: forward, loss, backward, clip, step
                for idx in train_batches(lengths, t.batch_size, t.seed, epoch):
                    batch = collate([rows[i] for i in idx], pad_id, task.pad_fields)
                    loss = model(batch)["loss"]
                    loss.backward()
                    if t.max_grad_norm:
                        clipped_step(optimizer, t.max_grad_norm)
                    else:
                        optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
            heads.append(time.perf_counter() - t0)
            handle.remove()
            for row in rows:
                del row["features"]
    pass_s, head_s = min(passes), min(heads)
    return {"train_sentences": len(examples["train"]), "train_rows": len(rows), "layers": task.options.layers,
            "head": task.options.head, "repeats": repeats, "encoder_pass_s": round(pass_s, 2),
            "encoder_pass_all_s": [round(x, 2) for x in passes], "epochs": epochs,
            "head_epochs_s": round(head_s, 2), "head_epochs_all_s": [round(x, 2) for x in heads],
            "head_epochs_in_encoder_passes": round(head_s / pass_s, 3),
            "encoder_calls_during_head_epochs": len(calls)}


def markdown(rows, timing):
    """The table and the timing line, as Markdown."""
    lines = ["| Layers (frozen MiniLM, 6 layers) | Head | Dev accuracy | Extraction, train + dev (s) "
             "| Training after extraction (s) | Whole run (s) |", "|---|---|---|---|---|---|"]
    for r in rows:
        ext = "—" if r["extract_s"] is None else f"{r['extract_s']:.1f}" + (" (reused)" if r["reused"] else "")
        train = "—" if r.get("train_s") is None else f"{r['train_s']:.0f}"
        lines.append(f"| {r['label']} | {r['head']} | {r['accuracy']:.4f} | {ext} | {train} | {r['wall_s']:.0f} |")
    if timing:
        lines.append("")
        lines.append(f"One encoder pass over the {timing['train_sentences']} training sentences: "
                     f"{timing['encoder_pass_s']:.1f} s. {timing['epochs']} epochs of the {timing['head']} head "
                     f"on their cached `{timing['layers']}` features: {timing['head_epochs_s']:.1f} s "
                     f"= {timing['head_epochs_in_encoder_passes']:.2f} encoder passes; encoder calls during "
                     f"those epochs: {timing['encoder_calls_during_head_epochs']} (fastest of "
                     f"{timing['repeats']} alternating timings of each).")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default=os.path.join(ROOT, "task_specs", "features-wsj-pos.yaml"))
    parser.add_argument("--finetune-spec", default=os.path.join(ROOT, "task_specs", "pos-wsj.yaml"))
    parser.add_argument("--out", default=os.path.join(ROOT, "runs", "feature-table"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override for the feature spec (repeatable)")
    parser.add_argument("--finetune-set", action="append", default=[], metavar="KEY=VALUE",
                        help="override for the fine-tuning spec (repeatable)")
    parser.add_argument("--layers", default=",".join(c for c, _ in ROWS), help="layer choices to run")
    parser.add_argument("--bilstm", action="store_true", help="add a concat_last_four row with the BiLSTM head")
    parser.add_argument("--no-finetune", action="store_true", help="skip the fine-tuning row")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    labels = dict(ROWS)
    jobs = [(c, labels.get(c, c), []) for c in args.layers.split(",") if c]
    if args.bilstm:
        jobs.append(("concat_last_four", labels["concat_last_four"], ["task_options.head=bilstm"]))
    results = []
    t_all = time.perf_counter()
    if not args.no_finetune:
        out = os.path.join(args.out, "finetune")
        _, metrics, wall, _ = run_spec_file(args.finetune_spec, [*args.finetune_set, f"output={out}"])
        results.append({"label": "Fine-tune all layers (not frozen)", "head": "linear (token_classification)",
                        "accuracy": metrics["validation/accuracy"], "extract_s": None, "reused": False, "wall_s": wall,
                        "output": out})
        print(markdown(results[-1:], None), flush=True)
    for choice, label, extra in jobs:
        name = choice + ("-" + extra[0].split("=")[1] if extra else "")
        out = os.path.join(args.out, name)
        spec, metrics, wall, stats = run_spec_file(
            args.spec, [*args.overrides, f"task_options.layers={choice}", *extra, f"output={out}"])
        # seconds of the passes that filled the caches, this run or the one that built them
        extract = sum(s["built_seconds"] for s in stats["splits"].values())
        reused = all(s["reused"] for s in stats["splits"].values())
        results.append({"label": label, "head": spec.options.head, "accuracy": metrics["validation/accuracy"],
                        "extract_s": extract, "reused": reused, "train_s": stats.get("train_seconds"), "wall_s": wall,
                        "output": out, "features": stats})
        print(markdown(results[-1:], None), flush=True)
    timing = time_pass_and_head(args.spec, [*args.overrides, "task_options.layers=concat_last_four"])
    text = markdown(results, timing)
    total = time.perf_counter() - t_all
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "table.md"), "w", encoding="utf-8") as fh:
        fh.write(text + f"\nWhole script: {total:.0f} s.\n")
    with open(os.path.join(args.out, "table.json"), "w", encoding="utf-8") as fh:
        json.dump({"rows": results, "timing": timing, "total_s": round(total, 1), "argv": sys.argv}, fh, indent=2)
    print(text + f"\nWhole script: {total:.0f} s; written to {args.out}/table.md")


if __name__ == "__main__":
    main()
