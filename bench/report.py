"""The benchmark's report: ``bench/RESULTS.md`` from ``results.json``, and the issue's targets.

Kept apart from ``bench/run.py`` (which runs the configurations) so the text can be rebuilt
from a saved ``results.json`` without running anything: ``markdown(json.load(...))``.
"""

from __future__ import annotations

import math

LETTERS = {"pad_max": "(a) HF Trainer, pad to max_length", "dynamic": "(b) HF Trainer, dynamic padding",
           "group_by_length": "(c) HF Trainer, group_by_length", "taskbert": "(d) taskbert",
           "group_by_length_bf16": "(c') HF Trainer, group_by_length, bf16 autocast",
           "taskbert_bf16": "(d') taskbert, bf16 autocast"}
TASKBERT = ("taskbert", "taskbert_bf16")


def short(mode):
    """``(c)`` for ``group_by_length``: the letter a table row starts with."""
    return LETTERS[mode].split(" ")[0]


def _noise(p: float, n: int) -> float:
    """Two standard errors of the difference of two accuracies ``p`` measured on ``n`` items each."""
    return 2 * math.sqrt(2 * p * (1 - p) / max(1, n))


def fmt(v, spec):
    return "–" if v is None else format(v, spec)


def _list(values, spec):
    return "–" if not values else ", ".join(format(v, spec) for v in values)


def _ratio(row, tb, base, key):
    """The paired median ratio stored on ``row`` (see :func:`_paired`), else ``tb / base`` of
    ``key`` (results.json files written before ``--repeats`` existed)."""
    paired = (row.get("ratio") or {}).get("median")
    return paired if paired is not None else tb[key] / base[key]


def markdown(res) -> str:
    """The RESULTS.md text: tables, ratios, checks against the issue's targets."""
    L = ["# Benchmark results\n",
         f"Made by `flock /tmp/taskbert-cpu.lock {res['command']}` on {res['started']} "
         f"({res['machine']}; load average before the run {res['loadavg_before']:.2f}).",
         f"Same model ({res['args']['model'] or 'the packaged MiniLM-L6'}), same data, batch {res['args']['batch_size']}, max_length "
         f"{res['args']['max_length']}, "
         + "; ".join(f"{name}: {r['steps']} optimizer steps per configuration, the first "
                     f"{r['steps'] - r['timed_steps']} untimed" for name, block in res["train"].items()
                     for r in list(block.values())[:1])
         + (" (the second epoch is timed)" if res["args"]["steps"] is None else "")
         + (", bf16 on both sides (the Trainer's bf16=True, taskbert's precision: auto)"
            if res.get("device") == "cuda" else ", fp32 unless a row says bf16")
         + f", {res['threads']} threads. "
         f"Each configuration ran in its own process after waiting for an idle CPU; `cpu` is the "
         f"share of the cores the process got in its timed window (about 100% = undisturbed).\n",
         f"{res.get('peak_dtype', 'fp32')} matmul peak measured in this run: **{res['peak_gflops']:.1f} GFLOP/s** "
         f"(MFU = model FLOPs on real, non-pad tokens per second / this peak). Total benchmark "
         f"time {res['total_s'] / 60:.1f} min.\n"]
    for name, block in res["train"].items():
        bf16 = any(r.get("ratio_bf16") for r in block.values())
        L += [f"## Fine-tuning: {name}\n",
              "| configuration | samples/s | real tokens/s | pad efficiency | MFU | taskbert × | "
              "quality | peak RSS MB | cpu | samples/s of each run | taskbert × in each round |"
              + (" taskbert bf16 × | taskbert bf16 × in each round |" if bf16 else ""),
              "|---|---:|---:|---:|---:|---:|---|---:|---:|---|---|" + ("---:|---|" if bf16 else "")]
        for mode, r in block.items():
            ratio, ratio_bf16 = r.get("ratio"), r.get("ratio_bf16")
            q = f"acc {r['accuracy']:.3f}" + (f", F1 {r['f1']:.3f}" if r.get("f1") is not None else "")
            L.append(f"| {LETTERS[mode]} | {r['samples_per_s']:.1f} | {r['real_tokens_per_s']:.0f} | "
                     f"{r['padding_efficiency']:.2f} | {r['mfu']:.0%} | "
                     f"{fmt(ratio and ratio['median'], '.2f')} | {q} | "
                     f"{r['peak_rss_mb']:.0f} | {r['cpu_share']:.0%} | {_list(r.get('runs'), '.1f')} | "
                     f"{_list(ratio and ratio['rounds'], '.2f')} |"
                     + (f" {fmt(ratio_bf16 and ratio_bf16['median'], '.2f')} | "
                        f"{_list(ratio_bf16 and ratio_bf16['rounds'], '.2f')} |" if bf16 else ""))
        L.append("")
        if bf16:
            L += ["`taskbert bf16 ×` is (d') over the row: against (c') both sides autocast to bf16; "
                  "against the fp32 rows it compares taskbert's `precision: auto` on this CPU (bf16, "
                  "which the CPU has units for) with the Trainer's default (fp32). MFU is against "
                  "the fp32 peak, so bf16 rows can pass 100%.\n"]
    p = res.get("predict")
    if p:
        L += [f"## Inference: sentiment, {p['pipeline']['n']} sentences\n",
              "| path | sentences/s | × pipeline | same labels as pipeline | accuracy | peak RSS MB | cpu "
              "| sentences/s of each run | × pipeline in each round |",
              "|---|---:|---:|---:|---:|---:|---:|---|---|"]
        for key, r in p.items():
            L.append(f"| {key} | {r['sentences_per_s']:.1f} | {_ratio(r, r, p['pipeline'], 'sentences_per_s'):.2f} | "
                     f"{r['same_labels_as_pipeline']:.1%} | {r['accuracy']:.3f} | {r['peak_rss_mb']:.0f} | "
                     f"{r['cpu_share']:.0%} | {_list(r.get('runs'), '.1f')} | "
                     f"{_list((r.get('ratio') or {}).get('rounds'), '.2f')} |")
        L.append("")
    if res.get("padding"):
        L += ["## Padding efficiency (sentiment, the first training batches, tokenizer only)\n",
              "Real / padded tokens and real / padded ΣL² (attention) per sampler: compute is spent "
              "on padded shapes, so this bounds what batching alone can gain.\n",
              "| sampler | tokens | attention |", "|---|---:|---:|"]
        L += [f"| {LETTERS[k]} | {v['tokens']:.3f} | {fmt(v['attention'], '.3f')} |"
              for k, v in res["padding"].items()]
        L.append("")
    L += ["## Targets (issue 7)\n", "| target | measured | met |", "|---|---|---|"]
    for line in res["checks"]:
        L.append(f"| {line['target']} | {line['measured']} | {'yes' if line['ok'] else '**no**'} |")
    L.append("")
    L.append("Raw figures: `bench/results.json` (written by the same run).")
    return "\n".join(L) + "\n"


def checks(res) -> list[dict]:
    """Compare the run with the issue's targets; each check has target, measured, ok."""
    out = []
    for name, block in res["train"].items():
        tb = block.get("taskbert")
        if tb:  # the targets are fp32 against fp32
            for mode, want in (("group_by_length", 1.3), ("dynamic", 2.5)):
                if mode in block:
                    ratio = _ratio(block[mode], tb, block[mode], "samples_per_s")
                    out.append({"target": f"{name}: fine-tuning ≥ {want}× {short(mode)}",
                                "measured": f"{ratio:.2f}×", "ok": ratio >= want})
            out.append({"target": f"{name}: MFU of useful tokens ≥ 0.6", "measured": f"{tb['mfu']:.2f}",
                        "ok": tb["mfu"] >= 0.6})
            hf_rss = max(r["peak_rss_mb"] for m, r in block.items() if m not in TASKBERT)
            rss = tb["peak_rss_mb"] / block.get("group_by_length", {"peak_rss_mb": hf_rss})["peak_rss_mb"]
            out.append({"target": f"{name}: peak RSS ≤ 1.2× Trainer (c)", "measured": f"{rss:.2f}×",
                        "ok": rss <= 1.2})
        n = res.get("eval_items", {}).get(name, res["args"]["n_eval"])  # words for NER
        for side in (m for m in TASKBERT if m in block):
            mine = block[side]
            for mode, r in block.items():
                if mode in TASKBERT:
                    continue
                tol = _noise((r["accuracy"] + mine["accuracy"]) / 2, n)
                ok = mine["accuracy"] >= r["accuracy"] - tol
                out.append({"target": f"{name}: {short(side)} taskbert accuracy not below {short(mode)} "
                                      f"beyond noise (±{tol:.3f}, 2 s.e.)",
                            "measured": f"{mine['accuracy']:.3f} vs {r['accuracy']:.3f}", "ok": ok})
    p = res.get("predict")
    if p:
        ratio = _ratio(p["taskbert"], p["taskbert"], p["pipeline"], "sentences_per_s")
        out.append({"target": "predict ≥ 2× pipeline", "measured": f"{ratio:.2f}×", "ok": ratio >= 2})
        same = p["taskbert"]["same_labels_as_pipeline"]
        out.append({"target": "predict labels identical to pipeline", "measured": f"{same:.1%}",
                    "ok": same == 1.0})
    return out


