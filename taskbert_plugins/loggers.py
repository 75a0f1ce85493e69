"""Built-in metric loggers, chosen by name in ``train.loggers``.

* ``console``: one line per log step or evaluation (printed above the progress bar);
* ``csv``: ``metrics.csv`` in the run folder, one row per record, columns grown as needed;
* ``tensorboard``: event files in ``<run>/tensorboard`` (needs the optional ``tensorboard``
  package: ``pip install 'taskbert[tensorboard]'``).

A logger is a class registered through ``taskbert_register_loggers``: ``Logger(trainer)``
is made when training starts, ``log(step, metrics)`` is called for every record and
``close()`` after the final evaluation. An optional ``check(where)`` class method runs at
spec validation, so a missing dependency fails before any weights load. This module also
dispatches the lifecycle hooks to the loggers a run chose, whichever plugin registered them.
"""

import csv
import importlib.util
import os
import weakref

from tqdm.auto import tqdm

from taskbert import SpecError, hookimpl, registries

# trainer -> the logger objects of its run; weak, so a finished trainer frees them
_ACTIVE = weakref.WeakKeyDictionary()


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.4g}" if value and (abs(value) < 1e-3 or abs(value) >= 1e4) else f"{value:.4f}"
    return str(value)


def _numeric(metrics):
    """The plottable entries of a record: numbers, not flags or bookkeeping."""
    return {k: v for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
            and k not in ("step", "epoch", "best_step")}


class ConsoleLogger:
    """One line per record: ``step 40/62: train/loss 0.4312  lr 5.6e-05 ...``."""

    def __init__(self, trainer):
        self.trainer = trainer

    def log(self, step, metrics):
        """Print a record above the progress bar."""
        label = "best model" if metrics.get("final") else f"step {step}/{self.trainer.total_steps}"
        parts = [f"{k} {_fmt(v)}" for k, v in metrics.items()   # tables (by_type) stay in metrics.jsonl
                 if k not in ("step", "final") and not isinstance(v, (dict, list))]
        tqdm.write(f"{label}: " + "  ".join(parts))

    def close(self):
        """Nothing to release."""


class CsvLogger:
    """``metrics.csv`` beside ``metrics.jsonl``; rewritten whole only when a record brings
    new columns (evaluation records carry keys that log steps lack)."""

    def __init__(self, trainer):
        self.path = os.path.join(trainer.run_dir, "metrics.csv")
        # on --resume the trainer's history is metrics.jsonl cut back to the checkpoint
        self.rows = [dict(r) for r in trainer.history]
        self.columns = []
        self._rewrite()

    def _grow(self, row):
        new = [k for k in row if k not in self.columns]
        self.columns.extend(new)
        return bool(new)

    def _rewrite(self):
        for row in self.rows:
            self._grow(row)
        with open(self.path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(self.rows)

    def log(self, step, metrics):
        """Append one row (or rewrite the file when the columns grow)."""
        self.rows.append(dict(metrics))
        if self._grow(metrics):
            self._rewrite()
            return
        with open(self.path, "a", newline="", encoding="utf-8") as fh:
            csv.DictWriter(fh, fieldnames=self.columns).writerow(metrics)

    def close(self):
        """Nothing to release: every row is written as it comes."""


class TensorBoardLogger:
    """Scalars in ``<run>/tensorboard``; the final evaluation of the best model goes under
    ``best/`` so it does not look like one more point of the validation curve."""

    @classmethod
    def check(cls, where="train.loggers"):
        """Raise SpecError when the tensorboard package is missing."""
        if importlib.util.find_spec("tensorboard") is None:
            raise SpecError(f"{where}: logger 'tensorboard' needs the tensorboard package, which "
                            f"is not installed; run: pip install 'taskbert[tensorboard]' "
                            f"(or choose from console, csv)")

    def __init__(self, trainer):
        self.check()
        from torch.utils.tensorboard import SummaryWriter

        # on --resume, points past the checkpoint (logged before the crash, logged again now)
        # are purged, as metrics.jsonl is cut back; without it the curves zig-zag there
        self.writer = SummaryWriter(log_dir=os.path.join(trainer.run_dir, "tensorboard"),
                                    purge_step=trainer.step + 1 if trainer.step else None)

    def log(self, step, metrics):
        """Add every number in the record as a scalar at ``step``."""
        prefix = "best/" if metrics.get("final") else ""
        for key, value in _numeric(metrics).items():
            self.writer.add_scalar(prefix + key, value, step)
        self.writer.flush()  # a crashed run still leaves every logged point readable

    def close(self):
        """Flush and close the event file."""
        self.writer.close()


@hookimpl
def taskbert_register_loggers(register):
    """The built-in loggers."""
    register("console", ConsoleLogger)
    register("csv", CsvLogger)
    register("tensorboard", TensorBoardLogger)


@hookimpl(tryfirst=True)
def taskbert_train_start(trainer):
    """Make the loggers named in ``train.loggers`` (names were checked with the spec); first,
    so what another plugin records at the start (pretraining's step-0 evaluation) is logged."""

    table = registries().loggers
    _ACTIVE[trainer] = [table.get(name, where="train.loggers")(trainer)
                        for name in trainer.spec.train.loggers]


@hookimpl
def taskbert_log_metrics(trainer, step, metrics):
    """Hand a record to every logger of the run."""
    for logger in _ACTIVE.get(trainer, ()):
        logger.log(step, metrics)


@hookimpl(trylast=True)
def taskbert_train_end(trainer, metrics):
    """Close the run's loggers, after every other plugin's train_end."""
    for logger in _ACTIVE.pop(trainer, ()):
        close = getattr(logger, "close", None)
        if close is not None:
            close()
