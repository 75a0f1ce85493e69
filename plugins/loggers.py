"""Built-in loggers on the ``taskbert_log_metrics`` hook, chosen by ``train.loggers``.

* ``console``: one line per log step or evaluation (printed above the progress bar);
* ``csv``: ``metrics.csv`` in the run folder, one row per record, columns grown as needed.
"""

import csv
import os

from tqdm.auto import tqdm

from taskbert import hookimpl

KNOWN = ("console", "csv")


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-3 or abs(value) >= 1e4 else f"{value:.4f}"
    return str(value)


@hookimpl
def taskbert_train_start(trainer):
    unknown = [n for n in trainer.spec.train.loggers if n not in KNOWN]
    if unknown:
        from taskbert import SpecError

        raise SpecError(f"train.loggers: unknown logger {unknown[0]!r}; known: {', '.join(KNOWN)}")


@hookimpl
def taskbert_log_metrics(trainer, step, metrics):
    loggers = trainer.spec.train.loggers
    if "console" in loggers:
        parts = [f"{k} {_fmt(v)}" for k, v in metrics.items() if k not in ("step",)]
        tqdm.write(f"step {step}/{trainer.total_steps}: " + "  ".join(parts))
    if "csv" in loggers:
        path = os.path.join(trainer.run_dir, "metrics.csv")
        rows = []
        if os.path.exists(path):
            with open(path, newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
        rows.append({k: v for k, v in metrics.items()})
        columns = []
        for row in rows:
            columns.extend(k for k in row if k not in columns)
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
