"""Counts among a task's metrics (QA's has_ans_total) show as integers and stay out of the
metrics chart and the seed summaries; scores show to four places."""

import os

from taskbert.cli.numbers import summary_line
from taskbert.cli.report import _metrics_table, plot_curves
from taskbert.cli.seeds import summarize


def test_the_console_line():
    final = {"validation/exact": 0.5, "validation/has_ans_total": 100, "validation/loss": 0.3, "step": 4}
    assert summary_line(final) == "validation/exact 0.5000  validation/has_ans_total 100"


def test_seed_summaries_average_scores_only():
    runs = {1: {"validation/f1": 0.5, "validation/no_ans_total": 50}, 2: {"validation/f1": 0.7, "validation/no_ans_total": 50}}
    summary = summarize(runs)
    assert set(summary["mean"]) == {"validation/f1"}
    assert abs(summary["mean"]["validation/f1"] - 0.6) < 1e-12


def test_report_keeps_counts_out_of_the_chart(tmp_path):
    history = [{"step": s, "validation/has_ans_total": 100, "validation/no_ans_total": 50} for s in (1, 2)]
    plot_curves(history, str(tmp_path))
    assert not os.path.exists(tmp_path / "metrics.png")            # only counts: no chart
    history = [{**h, "validation/f1": 0.1 * h["step"]} for h in history]
    plot_curves(history, str(tmp_path))
    assert os.path.exists(tmp_path / "metrics.png")
    table = "\n".join(_metrics_table({"validation/f1": 0.25, "validation/has_ans_total": 100}))
    assert "| f1 | 0.2500 |" in table and "| has_ans_total | 100 |" in table
