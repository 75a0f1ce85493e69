"""feature_classification and feature_tagging: a frozen encoder whose chosen layers feed a
light head, with the features cached on disk.

The package is the plugin: its hooks are here, its code in the modules beside this file."""

import os
import time

from taskbert import atomic_json, hookimpl

from .extract import add_extract_command, extract_features  # noqa: F401
from .tagging import FeatureTagging
from .task import (  # noqa: F401
    STATS_FILE,
    FeatureClassification,
    FeatureOptions,
    FeatureTask,
    store_stats,
)


def _write_stats(trainer, stats):
    atomic_json(os.path.join(trainer.run_dir, STATS_FILE), stats)


@hookimpl
def taskbert_register_tasks(register):
    """``feature_classification`` and ``feature_tagging``."""
    register(FeatureClassification)
    register(FeatureTagging)


@hookimpl
def taskbert_train_start(trainer):
    """Fill or reuse the feature caches before the first step, so that no epoch runs the
    encoder; count any encoder call made during training (there should be none)."""
    task = trainer.task
    if not isinstance(task, FeatureTask):
        return
    encoder = trainer.model.encoder
    splits = task.attach_features(trainer.spec, encoder, trainer.tokenizer, trainer.rows, trainer.device)
    calls = [0]
    handle = encoder.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    task._training = {"t0": time.perf_counter(), "calls": calls, "handle": handle,
                      "stats": {"layers": task.options.layers, "layer_ids": task.layer_ids, "splits": splits}}
    _write_stats(trainer, task._training["stats"])


@hookimpl
def taskbert_train_end(trainer, metrics):
    """Record the time spent training heads on cached features and the encoder calls."""
    state = getattr(trainer.task, "_training", None)
    if not isinstance(trainer.task, FeatureTask) or state is None:
        return
    state["handle"].remove()
    stats = dict(state["stats"], train_seconds=round(time.perf_counter() - state["t0"], 3),
                 encoder_calls_during_training=state["calls"][0], steps=trainer.step)
    weights = trainer.model.head.combiner.layer_weights()
    if weights is not None:
        stats["scalar_mix"] = {"weights": [round(w, 4) for w in weights],
                               "gamma": round(trainer.model.head.combiner.gamma.item(), 4)}
    _write_stats(trainer, stats)
    trainer.task._training = None


@hookimpl
def taskbert_register_commands(cli):
    """``taskbert extract SPEC``."""
    add_extract_command(cli)
