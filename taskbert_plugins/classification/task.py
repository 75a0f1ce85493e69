"""``sentence_classification``: one label per text from the [CLS] vector.

The head is BERT's: the encoder's pooler (dense + tanh over [CLS]), dropout, a linear
layer, softmax. Weights are named as in ``BertForSequenceClassification``, so a run's
``best/`` loads with ``AutoModelForSequenceClassification`` and predicts the same labels.
When the encoder has no pooler, the raw [CLS] vector feeds the classifier.
"""

import math
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Optional

from torch import nn

from taskbert import DataError, Head, Skip, Task, head_dropout, registries, softmax_list
from taskbert_plugins.own_heads import OwnHead, head_layout

from . import windows as win


def label_text(value):
    """The label name of a scalar from data or options; None for null, lists and objects.

    Strings stay as they are; booleans become ``true``/``false``; integers, and whole floats
    such as ``3.0``, become their digits, so ``3`` from jsonl, ``"3"`` from a CSV cell and
    ``3`` in ``task_options.labels`` are the same label. Other floats keep their string form
    (``'0.5'``, ``'nan'``) so that ``drop_labels`` can name them; :func:`is_label` refuses them
    as labels.
    """
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():   # False for NaN and infinities
        value = int(value)
    if isinstance(value, (str, int, float)):
        return str(value)
    return None


def is_label(value):
    """True for a value that can name a class: a non-empty string, an integer (or a whole
    float), a boolean. Null, lists, objects, NaN and fractional numbers cannot."""
    name = label_text(value)
    if name is None or not name.strip():
        return False
    return not isinstance(value, float) or value.is_integer()


_INTEGER = re.compile(r"[+-]?[0-9]+")


def label_order(labels):
    """Labels in id order: numerically when every name is an integer (``0, 1, 2, 10`` rather
    than ``0, 1, 10, 2``, so id ``i`` is label ``i`` for a plain-transformers argmax),
    otherwise sorted as strings."""
    labels = set(labels)
    if labels and all(_INTEGER.fullmatch(lab) for lab in labels):
        return sorted(labels, key=lambda lab: (int(lab), lab))
    return sorted(labels)


def normalize_label_options(options):
    """Turn ``labels`` and ``drop_labels`` of a frozen Options instance into label names
    (see :func:`label_text`); called from ``__post_init__``, so a ValueError becomes a
    one-line SpecError naming the spec file and ``task_options``."""
    for key in ("labels", "drop_labels"):
        values = getattr(options, key)
        if values is None:
            continue
        names = {}
        for value in values:
            name = label_text(value)
            if not is_label(value) and not (key == "drop_labels" and name is not None):
                raise ValueError(f"{key}: {value!r} is not a label; use non-empty strings, integers "
                                 f"or booleans")
            if name in names:
                same = "" if names[name] == value else f" ({names[name]!r} and {value!r} are the same label)"
                raise ValueError(f"{key}: {name!r} is listed twice{same}; list each label once")
            names[name] = value
        object.__setattr__(options, key, tuple(names))


def is_blank(text):
    """True when ``text`` holds nothing a tokenizer keeps: only white space, control and
    format characters (zero-width spaces and joiners, NUL), which become a bare [CLS] [SEP]."""
    return all(ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Zs", "Zl", "Zp") for ch in text)


@dataclass(frozen=True)
class ClassificationOptions(win.LongInputOptions):
    text_field: str = field(default="text", metadata={"predict": True, "help": "record field holding the text"})
    label_field: str = field(default="label", metadata={"predict": True, "help": "record field holding the label"})
    labels: Optional[tuple[str | int | bool, ...]] = field(default=None, metadata={
        "help": "label names in order; default: a ClassLabel column's names, else the training "
                "data's labels, sorted (numerically when all are integers)"})
    drop_labels: tuple[str | int | bool, ...] = field(default=(), metadata={
        "help": "skip records with these labels (counted in validate)"})
    unseen_labels: str = field(default="error", metadata={
        "help": "labels in validation/test missing from train: error or ignore"})
    dropout: Optional[float] = field(default=None, metadata={
        "min": 0, "max": 1, "help": "head dropout; default: the one the architecture's own head uses "
                                    "(classifier_dropout, else hidden_dropout_prob)"})
    metrics: tuple[str, ...] = field(default=("accuracy", "macro_f1"), metadata={
        "help": "registered metric names computed on label lists"})

    def __post_init__(self):
        if self.unseen_labels not in ("error", "ignore"):
            raise ValueError(f"unseen_labels: {self.unseen_labels!r} is not allowed; use 'error' or 'ignore'")
        normalize_label_options(self)


class ClassificationHead(Head):
    """Dropout and a linear layer over the pooled [CLS] vector; cross-entropy on
    ``batch["label"]`` (-100: no label), or with ``regression`` one output and MSE. With
    ``pooling`` (long inputs in windows) the windows of a document are pooled into its logits
    (:mod:`taskbert_plugins.classification.windows`)."""

    def __init__(self, hidden_size, num_labels, dropout, regression=False, pooling=None):
        super().__init__()
        self.regression, self.pooling = regression, pooling
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)
        if pooling == "attention":
            self.window_attention = win.WindowAttention(hidden_size)

    def read_positions(self, batch, training):
        return "first"   # [CLS] (and the pooler over it) only

    def forward(self, encoder_out, batch):
        pooled = getattr(encoder_out, "pooler_output", None)
        if pooled is None:
            pooled = encoder_out.last_hidden_state[:, 0]   # (batch, hidden)
        if self.pooling:
            return win.windowed_output(self, batch, pooled, lambda v: self.classifier(self.dropout(v)))
        return with_label_loss(self.classifier(self.dropout(pooled)), batch, self.regression)


def with_label_loss(logits, batch, regression=False):
    """``{"logits"}``, with the loss when the batch holds ``label``: cross-entropy (-100: no
    label), or MSE on the one output with ``regression``."""
    out = {"logits": logits}
    if "label" in batch:
        if regression:
            out["loss"] = nn.functional.mse_loss(logits.squeeze(-1).float(), batch["label"].float())
        else:
            out["loss"] = nn.functional.cross_entropy(logits, batch["label"], ignore_index=-100)
    return out


class OwnClassificationHead(OwnHead):
    """The architecture's own sequence-classification head (RoBERTa, DistilBERT, DeBERTa,
    ModernBERT ...: see :mod:`taskbert_plugins.own_heads`), with the same losses."""

    kind = "sequence"

    def __init__(self, encoder, num_labels, dropout=None, regression=False, pooling=None):
        super().__init__(encoder, num_labels, dropout)
        self.regression, self.pooling = regression, pooling
        if pooling == "attention":
            self.window_attention = win.WindowAttention(encoder.config.hidden_size)

    def forward(self, encoder_out, batch):
        if self.pooling:   # attention: the pooled first-token vector, read as a one-token text
            first = encoder_out.last_hidden_state[:, 0]   # (batch, hidden)
            return win.windowed_output(
                self, batch, first,
                lambda v: self._model(inputs_embeds=v[:, None], attention_mask=batch["attention_mask"][:, :1],
                                      return_dict=True).logits,
                window_logits=lambda: self.own_output(encoder_out, batch).logits)
        return with_label_loss(self.own_output(encoder_out, batch).logits, batch, self.regression)


def classification_head(task, encoder, num_labels, regression=False):
    """The head for ``encoder``: its architecture's own layout where it has one (the task's
    ``hf_architecture`` follows), else the BERT-style :class:`ClassificationHead`."""
    cfg = encoder.config
    pooling = task.options.window_pooling if task.whole_examples else None
    if head_layout(task, cfg, "sequence") == "own":
        head = OwnClassificationHead(encoder, num_labels, task.options.dropout, regression, pooling)
        task.hf_architecture = head.architecture
        return head
    dropout = task.options.dropout if task.options.dropout is not None else head_dropout(cfg, "sequence")
    return ClassificationHead(cfg.hidden_size, num_labels, dropout, regression, pooling)


#: what a labelled record whose label is in ``task_options.drop_labels`` becomes (the core counts them)
DROPPED = Skip("whose label is in task_options.drop_labels")


class TextLabelTask(Task):
    """Shared label bookkeeping for tasks that predict one label per example."""

    Options = ClassificationOptions
    default_metric = "accuracy"
    hf_architecture = "BertForSequenceClassification"
    report_labels = "per_example"
    pad_fields = {}

    def __init__(self, options=None):
        super().__init__(options)
        self.labels = list(self.options.labels) if self.options.labels else None
        # windows of one long document share a batch and are pooled into one prediction
        self.whole_examples = self.options.long_inputs == "windows"

    def _label(self, record, where, labelled):
        """The label name of ``record`` (see :func:`label_text`); :data:`DROPPED` when it is in
        ``drop_labels`` (checked first, so a listed value is skipped, never refused) in a
        labelled split; None for an unlabelled input (predict, serve), which is predicted
        whatever its label field holds."""
        field_name = self.options.label_field
        if field_name not in record:
            if labelled:
                raise DataError(f"{where}: missing label field {field_name!r}; record has: "
                                f"{', '.join(map(str, record)) or 'nothing'} (set task_options.label_field)")
            return None
        value = record[field_name]
        label = label_text(value)
        if label is not None and label in self.options.drop_labels:
            if not labelled:   # an input to predict: its (unread) label must not skip it
                return None
            return DROPPED
        if is_label(value):
            return label
        if not labelled:   # predict/serve never read the label
            return None
        if value is None:
            raise DataError(f"{where}: label field {field_name!r} is null; every record of a labelled "
                            f"split needs a label (a non-empty string, an integer or a boolean): fill it "
                            f"in or remove the record")
        if isinstance(value, str):   # '' or only spaces, e.g. an empty CSV cell
            raise DataError(f"{where}: label field {field_name!r} is empty (got {value!r}); every record "
                            f"of a labelled split needs a label: fill it in, remove the record, or add "
                            f"{value!r} to task_options.drop_labels to skip such records")
        finite = isinstance(value, float) and math.isfinite(value)
        hint = f"; quote it (\"{value!r}\") to use it as a label name" if finite else ""
        raise DataError(f"{where}: label field {field_name!r} must be a non-empty string, an integer "
                        f"or a boolean, got {value!r}{hint}")

    def _text_option(self, name):
        """The task option that names the text field ``name`` (for the hint in errors)."""
        return "text_field" if name == self.options.text_field else "text_fields"

    def _text(self, record, name, where):
        """The text in ``record[name]``: present, a string, and not empty or only spaces
        (an empty text would train and predict on ``[CLS] [SEP]`` alone), in every split
        and in predict/serve inputs alike."""
        if name not in record:
            raise DataError(f"{where}: missing text field {name!r}; record has: "
                            f"{', '.join(map(str, record)) or 'nothing'} (set task_options.{self._text_option(name)})")
        value = record[name]
        if not isinstance(value, str):
            raise DataError(f"{where}: field {name!r} must be text, got {value!r}")
        if is_blank(value):
            raise DataError(f"{where}: field {name!r} is empty (got {value!r}); a text needs at least "
                            f"one character besides white space, control and zero-width ones: fill it in or remove the record")
        return value

    def data_labels(self, names):
        """Take a ClassLabel column's classes, in its id order, as the labels (less any in
        ``drop_labels``) unless ``task_options.labels`` or a saved model gave them."""
        classes = names.get(self.options.label_field)
        if self.labels is None and classes:
            self.labels = [c for c in map(label_text, classes) if c not in self.options.drop_labels]

    def setup(self, examples):
        if self.labels is None:
            if "train" not in examples:
                return
            self.labels = label_order(ex["label"] for ex in examples["train"])
        known = set(self.labels)
        for split, exs in examples.items():
            for ex in exs:
                if ex["label"] not in known:
                    if split != "train" and self.options.unseen_labels == "ignore":
                        continue
                    source = "task_options.labels" if self.options.labels else "the training data"
                    if split == "train":   # only task_options.labels can leave out a training label
                        hint = "add it to task_options.labels, or to task_options.drop_labels to leave such records out"
                    else:
                        hint = "set task_options.unseen_labels: ignore to score it as always wrong"
                    raise DataError(f"{ex['where']}: label {ex['label']!r} is not in {source} "
                                    f"({', '.join(self.labels)}); {hint}")
        if len(self.labels) < 2:
            raise DataError(f"data.train: needs at least 2 distinct labels, found {self.labels}")

    def label_id(self, label):
        return self.labels.index(label) if label in self.labels else -100

    def build_head(self, encoder):
        return classification_head(self, encoder, len(self.labels))

    def collect(self, out, batch):
        return softmax_list(out["logits"])

    def decode(self, results, rows, examples):
        probs = [None] * len(examples)
        for row, p in zip(rows, results):
            probs[row["example_index"]] = p
        out = []
        for p in probs:
            best = max(range(len(p)), key=p.__getitem__)
            out.append({"label": self.labels[best],
                        "probabilities": {lab: round(v, 6) for lab, v in zip(self.labels, p)}})
        return out

    def _metric_names(self):
        return list(self.options.metrics)

    def reported_metrics(self):
        """``task_options.metrics``, each looked up now so a misspelt one fails before training."""

        names = self._metric_names()
        for name in names:
            registries().metrics.get(name, where="task_options.metrics")
        return names

    def score(self, predictions, examples):

        metrics = registries().metrics
        golds = [ex["label"] for ex in examples]
        preds = [p["label"] for p in predictions]
        return {name: metrics.get(name, where="task_options.metrics")(golds, preds)
                for name in self.options.metrics}

    def gold(self, example):
        return example.get("label")

    def state_dict(self):
        return {"labels": self.labels, "head_layout": getattr(self, "head_layout", None)}

    def load_state_dict(self, state):
        self.labels = state["labels"]
        self.head_layout = state.get("head_layout", "legacy")

    def hf_config(self):
        return {"id2label": {str(i): lab for i, lab in enumerate(self.labels)},
                "label2id": {lab: i for i, lab in enumerate(self.labels)},
                "num_labels": len(self.labels)}


class SentenceClassification(TextLabelTask):
    """One label per text (sentiment, topic) from the [CLS] vector."""

    name = "sentence_classification"
    description = "one label per text from the [CLS] vector (sentiment, topics)"

    def example_from_record(self, record, where, labelled=True):
        label = self._label(record, where, labelled)
        if label is DROPPED:
            return label
        return {"text": self._text(record, self.options.text_field, where), "label": label, "where": where}

    def record_from_text(self, line):
        return {self.options.text_field: line}

    def check_encoding(self, tokenizer, max_length, config):
        if self.whole_examples:
            win.budget_overlap(self.options, max_length, tokenizer.num_special_tokens_to_add(pair=False))

    def truncation(self, examples, tokenizer, max_length):
        if not self.whole_examples:
            return super().truncation(examples, tokenizer, max_length)
        budget, overlap = win.budget_overlap(self.options, max_length, tokenizer.num_special_tokens_to_add(pair=False))
        counts = [len(ids) for ids in tokenizer([ex["text"] for ex in examples], add_special_tokens=False, verbose=False)["input_ids"]]
        return win.token_cuts(counts, budget, overlap, self.options.max_windows)

    def encode_all(self, examples, tokenizer, max_length):
        texts = [ex["text"] for ex in examples]
        if self.whole_examples:
            enc, kept = win.encode_texts(tokenizer, texts, max_length, self.options)
            pieces = [(i, w) for i, ws in enumerate(kept) for w in ws]
        else:   # one batched call to the Rust tokenizer is ~10x faster than one call per text
            enc = tokenizer(texts, truncation=True, max_length=max_length, return_attention_mask=False)
            pieces = [(i, i) for i in range(len(examples))]
        rows = []
        for i, w in pieces:
            label = examples[i]["label"]
            row = {"input_ids": enc["input_ids"][w], "example_index": i,
                   "label": self.label_id(label) if label is not None else -100}
            if "token_type_ids" in enc:
                row["token_type_ids"] = enc["token_type_ids"][w]
            rows.append(row)
        return rows
