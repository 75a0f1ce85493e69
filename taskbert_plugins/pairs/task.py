"""``sentence_pair``: a label or a score for a pair of texts (NLI, paraphrase, similarity).

The input is ``[CLS] a [SEP] b [SEP]`` with token type 0 for ``a`` and 1 for ``b``; when a
pair is too long the tokenizer's ``longest_first`` truncation cuts the longer side first,
one token at a time, so a long premise never pushes the short hypothesis out of the window.
The head is the same as ``sentence_classification`` (pooled [CLS], dropout, linear) and its
weights are named as in ``BertForSequenceClassification``, so ``best/`` loads in plain
transformers (with ``problem_type: regression`` and one output for similarity scores).

* ``objective: classification`` — softmax over labels, cross-entropy; label bookkeeping
  (label order, ``drop_labels`` such as SNLI's ``-``, unseen labels) comes from
  :class:`~taskbert_plugins.classification.TextLabelTask`.
* ``objective: regression`` — one real output, mean squared error; Pearson and Spearman.
"""

import math
import warnings
from dataclasses import dataclass, field
from typing import Literal, Optional

from taskbert import DataError, registries
from taskbert_plugins.classification import (
    DROPPED,
    TextLabelTask,
    classification_head,
    label_text,
    normalize_label_options,
)
from taskbert_plugins.classification import windows as win

DEFAULT_METRICS = {"classification": ("accuracy", "macro_f1"), "regression": ("pearson", "spearman")}


@dataclass(frozen=True)
class PairOptions(win.LongInputOptions):
    """``task_options`` of ``sentence_pair``."""

    text_a_field: str = field(default="sentence1", metadata={"predict": True, 
        "help": "record field holding the first text (premise, sentence 1)"})
    text_b_field: str = field(default="sentence2", metadata={"predict": True, 
        "help": "record field holding the second text (hypothesis, sentence 2)"})
    label_field: str = field(default="label", metadata={"predict": True, 
        "help": "record field holding the label (or the score for regression)"})
    objective: Literal["classification", "regression"] = field(default="classification", metadata={
        "help": "classification (softmax over labels) or regression (one score, MSE loss)"})
    labels: Optional[tuple[str | int | bool, ...]] = field(default=None, metadata={
        "help": "label names in order; default: the training data's labels, sorted "
                "(numerically when all are integers)"})
    drop_labels: tuple[str | int | bool, ...] = field(default=(), metadata={
        "help": "skip records with these labels, e.g. ['-'] for SNLI (counted in validate)"})
    unseen_labels: str = field(default="error", metadata={
        "help": "labels in validation/test missing from train: error or ignore"})
    dropout: Optional[float] = field(default=None, metadata={
        "min": 0, "max": 1, "help": "head dropout; default: the one the architecture's own head uses "
                                    "(classifier_dropout, else hidden_dropout_prob)"})
    metrics: Optional[tuple[str, ...]] = field(default=None, metadata={
        "help": "registered metric names; default accuracy, macro_f1 (classification) "
                "or pearson, spearman (regression)"})

    def __post_init__(self):
        if self.unseen_labels not in ("error", "ignore"):
            raise ValueError(f"unseen_labels: {self.unseen_labels!r} is not allowed; use 'error' or 'ignore'")
        if self.text_a_field == self.text_b_field:
            raise ValueError(f"text_b_field: {self.text_b_field!r} is the same field as text_a_field; "
                             f"name two different fields")
        if self.objective == "regression" and self.labels:
            raise ValueError("labels: a regression objective predicts a number; remove labels")
        normalize_label_options(self)   # 3 in labels/drop_labels is the label '3', as in data


class SentencePair(TextLabelTask):
    """A label (NLI, paraphrase) or a similarity score for a pair of texts."""

    name = "sentence_pair"
    description = "a label or a score for a pair of texts (NLI, paraphrase, similarity)"
    Options = PairOptions
    lower_is_better = ("loss", "perplexity", "mse")

    def __init__(self, options=None):
        super().__init__(options)
        self.regression = self.options.objective == "regression"
        if self.regression:
            self.report_labels = None   # scores, not labels
        self.metric_names = self.options.metrics or DEFAULT_METRICS[self.options.objective]
        # an instance attribute: the trainer reads task.default_metric
        self.default_metric = "pearson" if self.regression else "accuracy"

    # ----------------------------------------------------------------- data
    def _text_option(self, name):
        # _text (shared with sentence_classification) refuses a missing, non-text, empty or
        # whitespace-only text; the hint names the option that picks the field
        return "text_a_field" if name == self.options.text_a_field else "text_b_field"

    def _score(self, record, where, labelled):
        """The gold score of a regression record (None when absent and not required)."""
        value = record.get(self.options.label_field)
        if value is None or value == "":
            if labelled:
                raise DataError(f"{where}: missing score field {self.options.label_field!r}; "
                                f"record has: {', '.join(map(str, record)) or 'nothing'} (set task_options.label_field)")
            return None
        if label_text(value) in self.options.drop_labels:
            return DROPPED
        try:
            score = float(value)
        except (TypeError, ValueError):
            score = math.nan
        if isinstance(value, bool) or not math.isfinite(score):
            if value == self.options.label_field:   # the field's own name: a header line read as data
                hint = ("it looks like a header line read as data: with data.reader_options.columns a "
                        "csv/tsv file has no header line unless header: true says so")
            elif isinstance(value, str) and "," in value:
                hint = "a decimal comma? write scores with a point (0.5)"
            else:
                hint = "add it to task_options.drop_labels to skip it"
            raise DataError(f"{where}: score {value!r} in field {self.options.label_field!r} is not a "
                            f"finite number (objective: regression); {hint}")
        return score

    def example_from_record(self, record, where, labelled=True):
        label = self._score(record, where, labelled) if self.regression else self._label(record, where, labelled)
        if label is DROPPED:
            return label
        return {"text_a": self._text(record, self.options.text_a_field, where),
                "text_b": self._text(record, self.options.text_b_field, where),
                "label": label, "where": where}

    def record_from_text(self, line):
        """A plain-text input line for ``taskbert predict`` holds ``text a<TAB>text b``:
        exactly one tab, so a tab inside a text cannot silently shift the split."""
        tabs = line.count("\t")
        if tabs != 1:
            raise DataError(f"sentence_pair: a text input line needs exactly one tab between the two "
                            f"texts, found {tabs or 'none'} in {line[:60]!r}; "
                            f"or give a .jsonl/.csv/.tsv file")
        a, _, b = line.partition("\t")
        return {self.options.text_a_field: a, self.options.text_b_field: b}

    def setup(self, examples):
        if not self.regression:
            return super().setup(examples)
        if "train" in examples and len({ex["label"] for ex in examples["train"]}) < 2:
            raise DataError("data.train: all training scores are equal; regression needs varied scores")

    def check_encoding(self, tokenizer, max_length, config):
        if self.whole_examples:
            win.pair_budget(tokenizer, max_length, self.options)

    def truncation(self, examples, tokenizer, max_length):
        if not self.whole_examples:
            return super().truncation(examples, tokenizer, max_length)
        short_cap, budget, overlap = win.pair_budget(tokenizer, max_length, self.options)
        room = max_length - tokenizer.num_special_tokens_to_add(pair=True)
        cut, total, truncated = 0, 0, 0
        lengths = [[len(ids) for ids in tokenizer([ex[k] for ex in examples], add_special_tokens=False,
                                                  verbose=False)["input_ids"]] for k in ("text_a", "text_b")]
        for a, b in zip(*lengths):
            short, long = min(a, b), max(a, b)
            kept_short = min(short, short_cap)
            n = win.window_count(long, room - kept_short, overlap)
            read = win.tokens_read(long, room - kept_short, overlap, win.kept_windows(n, self.options.max_windows))
            total += a + b
            cut += short - kept_short + long - read
            truncated += max(0, a + b - room)
        return {"tokens left out by max_windows": (cut, total),
                "tokens cut by max_length with long_inputs: truncate": (truncated, total)}

    def encode_all(self, examples, tokenizer, max_length):
        texts_a, texts_b = [ex["text_a"] for ex in examples], [ex["text_b"] for ex in examples]
        if self.whole_examples:   # the longer text in windows, the shorter one in each
            pieces = [(i, ids, types) for i, ws in enumerate(win.encode_pairs(
                tokenizer, texts_a, texts_b, max_length, self.options)) for ids, types in ws]
        else:   # one batched call to the Rust tokenizer; 'longest_first' trims the longer text first
            enc = tokenizer(texts_a, texts_b, truncation="longest_first", max_length=max_length,
                            return_attention_mask=False)
            types = enc.get("token_type_ids")
            pieces = [(i, ids, types[i] if types is not None else None) for i, ids in enumerate(enc["input_ids"])]
        rows = []
        for i, ids, types in pieces:
            ex = examples[i]
            row = {"input_ids": ids, "example_index": i}
            if types is not None:
                row["token_type_ids"] = types
            if self.regression:
                if ex["label"] is not None:   # no key at all: the head computes no loss
                    row["label"] = float(ex["label"])
            else:
                row["label"] = self.label_id(ex["label"]) if ex["label"] is not None else -100
            rows.append(row)
        return rows

    # ---------------------------------------------------------------- model
    def build_head(self, encoder):
        if not self.regression:
            return super().build_head(encoder)
        return classification_head(self, encoder, 1, regression=True)   # one output: the score

    def collect(self, out, batch):
        if not self.regression:
            return super().collect(out, batch)
        return out["logits"].squeeze(-1).float().cpu().tolist()

    def decode(self, results, rows, examples):
        if not self.regression:
            return super().decode(results, rows, examples)
        scores = [None] * len(examples)
        for row, value in zip(rows, results):
            scores[row["example_index"]] = value
        return [{"score": round(s, 6)} for s in scores]

    def _metric_names(self):
        return list(self.metric_names)

    def score(self, predictions, examples):

        metrics = registries().metrics
        key = "score" if self.regression else "label"
        golds = [ex["label"] for ex in examples]
        preds = [p[key] for p in predictions]
        out = {}
        for name in self.metric_names:
            fn = metrics.get(name, where="task_options.metrics")
            with warnings.catch_warnings():   # scipy warns on constant input; handled below
                warnings.simplefilter("ignore", RuntimeWarning)
                value = fn(golds, preds)
            # a constant prediction has no correlation (NaN); NaN would never compare as an
            # improvement and would freeze best-model selection, so it counts as 0
            out[name] = value if math.isfinite(value) else 0.0
        return out

    # ---------------------------------------------------------------- state
    def state_dict(self):
        return {**super().state_dict(), "objective": self.options.objective}

    def hf_config(self):
        if not self.regression:
            return super().hf_config()
        return {"id2label": {"0": "score"}, "label2id": {"score": 0}, "num_labels": 1,
                "problem_type": "regression"}
