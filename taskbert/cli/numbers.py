"""How the commands show metrics: scores to four places, counts as they are."""


def is_count(value):
    """An integer among a task's metrics is a count (QA's ``has_ans_total``), not a score: it is
    shown as it is, and charts and seed summaries leave it out."""
    return isinstance(value, int) and not isinstance(value, bool)


def metric_text(value):
    """A metric as the console and ``report.md`` show it: a count as it is, a score to 4 places."""
    return str(value) if is_count(value) else f"{value:.4f}"


def summary_line(metrics):
    """A short human line of the final metrics."""
    keys = [k for k in metrics if "/" in k and not k.endswith("/loss")]
    return "  ".join(f"{k} {metric_text(metrics[k])}" for k in keys
                     if isinstance(metrics[k], (int, float)) and not isinstance(metrics[k], bool))
