"""Feature-based use: a frozen encoder, chosen layers, cached features, light heads.

The paper's second way of using BERT (Table 7): the encoder stays frozen, the hidden
states of chosen layers become features, and a small model trains on them. Two tasks:

* ``feature_classification``: one label per text; the pooled [CLS] (or mean) vector of
  the chosen layers, a linear layer or a small MLP;
* ``feature_tagging``: one tag per word (windows over long sentences, as the tagging task
  makes them); subtokens pooled per word (first / mean / last), a linear layer or a
  two-layer BiLSTM.

Features are computed once per split and kept in an on-disk cache (``cache.py``):
``FeatureTask.on_train_start`` fills or reuses the cache and attaches each row's features,
so no training epoch runs the encoder. Rows without features (``taskbert predict``) run the
encoder in the head's ``run_encoder``, through the same code that filled the cache.
``taskbert extract SPEC`` fills the cache without training and can export JSONL in the
layout of google-research/bert ``extract_features.py``.
"""

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Literal, Optional

from taskbert import atomic_json, pad_id, source_identity
from taskbert_plugins.classification import (
    ClassificationOptions,
    SentenceClassification,
)

from . import cache as fc
from .heads import (
    LAYER_CHOICES,
    SentenceFeatureHead,
    layer_indices,
)

LayerChoice = Literal[LAYER_CHOICES]
#: file written in the run folder: cache folders, extraction seconds, training seconds
STATS_FILE = "features.json"


@dataclass(frozen=True)
class FeatureOptions:
    """Options every feature task has (mixed into each task's Options)."""

    layers: LayerChoice = field(default="concat_last_four", metadata={
        "help": "embeddings, last, second_to_last, sum_last_four, concat_last_four, mean_all, scalar_mix"})
    head_hidden: int = field(default=256, metadata={
        "min": 1, "help": "hidden size of the MLP layer or of each BiLSTM direction"})
    cache_dir: Optional[str] = field(default=None, metadata={
        "path": True, "help": "feature cache folder; default $TASKBERT_FEATURE_CACHE or ~/.cache/taskbert/features"})
    cache_dtype: Literal["float32", "float16"] = field(default="float32", metadata={
        "help": "stored precision; float16 halves the cache"})
    extract_batch_size: int = field(default=64, metadata={"min": 1, "help": "rows per encoder batch when extracting"})


class FeatureTask:
    """Mixin for tasks on frozen-encoder features; put it before the base task class.

    A subclass gives every feature row ``unit_spans`` (``[[start, end], ...]`` subtoken
    positions, one per unit), names the units for JSONL (:meth:`unit_names`) and maps its
    ``pooling`` option to first | last | mean (:meth:`pool_mode`).
    """

    hf_architecture = None   # the head is ours: plain transformers cannot load it
    num_layers = None
    layer_ids = None

    def trainable_encoder(self):
        return False

    def head_dropout(self, config):
        """The head's dropout: task_options.dropout, else the encoder's hidden dropout."""
        if self.options.dropout is not None:
            return self.options.dropout
        return getattr(config, "hidden_dropout_prob", 0.1)

    def check_encoding(self, tokenizer, max_length, config):
        """The layer choice must exist in this encoder (validate knows before weights load)."""
        layer_indices(self.options.layers, config.num_hidden_layers)

    def configure(self, encoder):
        """Resolve the layer choice against the encoder's depth (``build_head`` calls it)."""
        self.num_layers = encoder.config.num_hidden_layers
        self.layer_ids = layer_indices(self.options.layers, self.num_layers)

    def pool_mode(self):
        """first | last | mean: how the subtokens of a unit become one vector."""
        return self.options.pooling

    def unit_names(self, row, example):
        """Names of the units of a row (of ``example``), for the JSONL export."""
        raise NotImplementedError

    def on_train_start(self, trainer):
        """Fill or reuse the feature caches before the first step, so that no epoch runs the
        encoder; count any encoder call made during training (there should be none)."""
        encoder = trainer.model.encoder
        splits = self.attach_features(trainer.spec, encoder, trainer.tokenizer, trainer.rows, trainer.device)
        calls = [0]
        handle = encoder.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
        self._run = {"t0": time.perf_counter(), "calls": calls, "handle": handle,
                     "stats": {"layers": self.options.layers, "layer_ids": self.layer_ids, "splits": splits}}
        atomic_json(os.path.join(trainer.run_dir, STATS_FILE), self._run["stats"])

    def on_train_end(self, trainer, metrics):
        """Record the time spent training heads on cached features and the encoder calls."""
        run, self._run = getattr(self, "_run", None), None
        if run is None:
            return
        run["handle"].remove()
        stats = dict(run["stats"], train_seconds=round(time.perf_counter() - run["t0"], 3),
                     encoder_calls_during_training=run["calls"][0], steps=trainer.step)
        combiner = trainer.model.head.combiner
        weights = combiner.layer_weights()
        if weights is not None:
            stats["scalar_mix"] = {"weights": [round(w, 4) for w in weights],
                                   "gamma": round(combiner.gamma.item(), 4)}
        atomic_json(os.path.join(trainer.run_dir, STATS_FILE), stats)

    def feature_head(self, head):
        """``head`` told which layers and pooling to extract when features are not cached."""
        head.layer_ids, head.pooling = self.layer_ids, self.pool_mode()
        return head

    # ------------------------------------------------------------------ cache
    def cache_key(self, spec, split, rows, fingerprints):
        """Everything the cached values depend on; any change gives a new cache folder."""

        path = spec.data.splits()[split]
        return {
            "format": fc.CACHE_FORMAT, "task": self.name,
            "model": fingerprints["model"], "weights": fingerprints["weights"],
            "tokenizer": fingerprints["tokenizer"], "layers": self.layer_ids,
            "pooling": self.options.pooling, "max_length": spec.encoder.max_length,
            "dtype": self.options.cache_dtype,
            "data": {**source_identity(path), "limit": getattr(spec.data.limit, split)},
            "rows": fc.rows_fingerprint(rows),
        }

    def feature_stores(self, spec, encoder, tokenizer, rows_by_split, device, log=None):
        """``{split: (store, seconds or None)}``: the verified cache of each split, built
        with one encoder pass where it is missing or damaged."""
        root = self.options.cache_dir or fc.default_cache_dir()
        fingerprints = {"model": encoder.name_or_path, "weights": fc.weights_fingerprint(encoder),
                        "tokenizer": fc.tokenizer_fingerprint(tokenizer)}
        pad = pad_id(tokenizer)
        out = {}
        for split, rows in rows_by_split.items():
            key = self.cache_key(spec, split, rows, fingerprints)
            out[split] = fc.ensure_store(root, key, lambda folder, rows=rows, key=key: fc.build_store(
                folder, key, encoder, rows, self.layer_ids, self.pool_mode(),
                self.options.extract_batch_size, pad, self.pad_fields, device,
                self.options.cache_dtype), log)
        return out

    def attach_features(self, spec, encoder, tokenizer, rows_by_split, device, log=None):
        """Fill or reuse the caches and put each row's features (a memory-mapped tensor)
        in ``row["features"]``; return per-split statistics."""
        stores = self.feature_stores(spec, encoder, tokenizer, rows_by_split, device, log)
        for split, (store, _) in stores.items():
            for i, row in enumerate(rows_by_split[split]):
                row["features"] = store.row(i)
        return {split: store_stats(split, store, seconds, log) for split, (store, seconds) in stores.items()}


def store_stats(split, store, seconds, log=None):
    """A split's cache in numbers (and one log line): folder, rows, shape, seconds."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    units, layers, hidden = store.manifest["shape"]
    how = "reused" if seconds is None else f"extracted in {seconds:.2f} s"
    log(f"features {split}: {len(store)} rows, {units} units x {layers} layers x {hidden} ({how}): {store.folder}")
    return {"cache": store.folder, "rows": len(store), "shape": store.manifest["shape"],
            "reused": seconds is None, "extract_seconds": None if seconds is None else round(seconds, 3),
            "built_seconds": store.manifest["extract_seconds"]}   # the pass that filled the cache


# ------------------------------------------------------------ sentence classification
@dataclass(frozen=True)
class FeatureClassificationOptions(ClassificationOptions, FeatureOptions):
    """Options of ``feature_classification``."""

    pooling: Literal["cls", "mean"] = field(default="cls", metadata={
        "help": "sentence vector: the [CLS] position, or the mean over all tokens"})
    head: Literal["linear", "mlp"] = field(default="linear", metadata={
        "help": "linear layer, or an MLP with one hidden layer of head_hidden units"})

    def __post_init__(self):
        super().__post_init__()
        if self.long_inputs != "truncate":
            raise ValueError("long_inputs: only 'truncate' here (cached features are one row per "
                             "text); read long documents in windows with sentence_classification")


class FeatureClassification(FeatureTask, SentenceClassification):
    """One label per text from cached frozen-encoder features and a linear/MLP head."""

    name = "feature_classification"
    description = "one label per text from frozen-encoder features (cached) and a linear or MLP head"
    Options = FeatureClassificationOptions

    def pool_mode(self):
        return {"cls": "first", "mean": "mean"}[self.options.pooling]

    def label_id(self, label):
        # without a train split (taskbert extract) there are no labels to map
        return super().label_id(label) if self.labels else -100

    def encode_all(self, examples, tokenizer, max_length):
        rows = super().encode_all(examples, tokenizer, max_length)
        for row in rows:
            row["unit_spans"] = [[0, 1] if self.options.pooling == "cls" else [0, len(row["input_ids"])]]
        return rows

    def unit_names(self, row, example):
        return ["[CLS]" if self.options.pooling == "cls" else "[MEAN]"]

    def build_head(self, encoder):
        self.configure(encoder)
        cfg = encoder.config
        dropout = self.head_dropout(cfg)
        return self.feature_head(SentenceFeatureHead(
            self.options.layers, len(self.layer_ids), cfg.hidden_size, len(self.labels or ()),
            self.options.head, self.options.head_hidden, dropout))
