"""bench/report.py turns a results.json into RESULTS.md and the target checks: worked by hand here."""

from bench.report import checks, markdown


def _row(sps, acc, rss=1000.0, ratio=None, ratio_bf16=None):
    row = {"samples_per_s": sps, "real_tokens_per_s": sps * 30, "padding_efficiency": 0.9,
           "mfu": 0.5, "accuracy": acc, "f1": None, "peak_rss_mb": rss, "cpu_share": 1.0,
           "runs": [sps], "steps": 10, "timed_steps": 5}
    if ratio is not None:
        row["ratio"] = {"median": ratio, "rounds": [ratio]}
    if ratio_bf16 is not None:
        row["ratio_bf16"] = {"median": ratio_bf16, "rounds": [ratio_bf16]}
    return row


def _results():
    block = {"dynamic": _row(20.0, 0.80, ratio=2.6, ratio_bf16=4.0),
             "group_by_length": _row(40.0, 0.80, ratio=1.25, ratio_bf16=2.0),
             "group_by_length_bf16": _row(60.0, 0.79, ratio=0.83, ratio_bf16=1.33),
             "taskbert": _row(50.0, 0.80, rss=1100.0),
             "taskbert_bf16": _row(80.0, 0.60, rss=1150.0)}
    return {"command": "python -m bench.run --bf16", "started": "2026-12-01 22:00",
            "machine": "2-core test CPU", "loadavg_before": 0.1, "threads": 2,
            "args": {"model": None, "batch_size": 32, "max_length": 128, "steps": None, "n_eval": 500},
            "peak_gflops": 300.0, "total_s": 60.0, "train": {"sentiment": block}}


def test_checks_use_fp32_ratios_and_score_each_taskbert_side():
    by_target = {c["target"]: c for c in checks(_results())}
    assert by_target["sentiment: fine-tuning ≥ 1.3× (c)"]["ok"] is False      # 1.25 < 1.3
    assert by_target["sentiment: fine-tuning ≥ 2.5× (b)"]["ok"] is True       # 2.6
    assert by_target["sentiment: peak RSS ≤ 1.2× Trainer (c)"]["measured"] == "1.10×"
    # 500 items at p = 0.8: 2 * sqrt(2 * 0.8 * 0.2 / 500) = 0.0506
    fp32 = by_target["sentiment: (d) taskbert accuracy not below (c) beyond noise (±0.051, 2 s.e.)"]
    assert fp32["ok"] is True
    # 0.60 is far below 0.80: the bf16 side fails its quality check (p = 0.7: ±0.058)
    bf16 = by_target["sentiment: (d') taskbert accuracy not below (c) beyond noise (±0.058, 2 s.e.)"]
    assert bf16["ok"] is False and bf16["measured"] == "0.600 vs 0.800"
    # taskbert rows are never compared with each other
    assert not any("not below (d" in t for t in by_target)


def test_markdown_has_the_bf16_columns_only_when_a_bf16_side_ran():
    res = _results()
    res["checks"] = checks(res)
    text = markdown(res)
    assert "taskbert bf16 ×" in text and "(c') HF Trainer, group_by_length, bf16 autocast" in text
    line = next(l for l in text.splitlines() if l.startswith("| (c) HF Trainer"))
    assert "| 1.25 |" in line and "| 2.00 |" in line
    for row in res["train"]["sentiment"].values():
        row.pop("ratio_bf16", None)
    del res["train"]["sentiment"]["taskbert_bf16"], res["train"]["sentiment"]["group_by_length_bf16"]
    assert "taskbert bf16 ×" not in markdown(res)


def test_cpu_model_names_the_first_cpu_and_its_bf16_units(tmp_path):
    from bench.common import cpu_model

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Some Xeon\nflags\t\t: fpu avx512f amx_bf16 avx512_bf16\n\n"
                    "processor\t: 1\nmodel name\t: Other\nflags\t\t: fpu\n")
    assert cpu_model(str(info)) == "Some Xeon (AMX bf16)"
    info.write_text("model name\t: Some EPYC\nflags\t\t: fpu avx2\n")
    assert cpu_model(str(info)) == "Some EPYC (no bf16 units)"
    info.write_text("flags\t\t: avx512_bf16\n")
    assert cpu_model(str(info)) == "CPU (AVX-512 bf16)"
    assert cpu_model(str(tmp_path / "missing")) == "CPU"


def test_a_new_run_keeps_the_hand_kept_history(tmp_path):
    from bench.run import HISTORY_MARKER, write_results

    path = tmp_path / "RESULTS.md"
    write_results(str(path), "# Benchmark results\n\nfirst\n")
    assert path.read_text() == "# Benchmark results\n\nfirst\n"          # nothing to keep yet
    path.write_text(path.read_text() + f"\n---\n\n{HISTORY_MARKER}\n\nold figures\n")
    write_results(str(path), "# Benchmark results\n\nsecond\n")
    text = path.read_text()
    assert text.startswith("# Benchmark results\n\nsecond\n") and "first" not in text
    assert text.count(HISTORY_MARKER) == 1 and text.endswith("old figures\n")
