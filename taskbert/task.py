"""The Task base class: what a task plugin implements, and the model that joins
a pretrained encoder to a task's head.

The core moves tensors and files; a task says what they mean. Subclass :class:`Task`,
give it a ``name`` and an ``Options`` dataclass, and register it through the
``taskbert_register_tasks`` hook. The life of an example::

    record (dict from a reader) --example_from_record--> example
    example --encode--> feature rows (one or more windows, lists of token ids)
    rows --(core: bucket, pad, collate)--> batch --forward--> head output
    head output --loss--> scalar          (training)
    head output --collect--> per-row results --decode--> one prediction per example
    predictions + examples --score--> metrics
"""

from dataclasses import dataclass
from typing import ClassVar, Optional

import torch
from torch import nn


@dataclass(frozen=True)
class NoOptions:
    """Options of a task that takes none."""


class Task:
    """Base class of every task. Override what your task needs; read the docstrings."""

    #: registry key and the value of ``task:`` in a spec
    name: ClassVar[str] = ""
    #: one line for ``taskbert tasks`` and ``taskbert init``
    description: ClassVar[str] = ""
    #: dataclass validated from the spec's ``task_options``
    Options: ClassVar[type] = NoOptions
    #: validation metric that picks the best model unless ``train.metric`` says otherwise
    default_metric: ClassVar[str] = "loss"
    #: metric names (besides ``loss``) where smaller is better
    lower_is_better: ClassVar[tuple] = ("loss", "perplexity")
    #: per-token fields besides input_ids/token_type_ids, with their padding value
    pad_fields: ClassVar[dict] = {"labels": -100}
    #: architecture name written to ``best/config.json`` so plain transformers loads it
    hf_architecture: ClassVar[Optional[str]] = None
    #: the data format used for files whose extension says nothing (e.g. ``conll``)
    default_format: ClassVar[Optional[str]] = None

    def __init__(self, options=None):
        self.options = options if options is not None else self.Options()

    # ----------------------------------------------------------------- data
    def example_from_record(self, record, where, labelled=True):
        """Turn one reader record into an example; raise DataError naming ``where``.

        ``where`` is ``"file:line"``. With ``labelled=False`` (prediction) the gold
        label may be absent.
        """
        raise NotImplementedError

    def record_from_text(self, line):
        """The record for one line of plain text given to ``taskbert predict``."""
        return {"text": line}

    def setup(self, examples):
        """See all examples (``{split: [example]}``) before encoding: build label maps,
        check dev labels against train. Raise DataError for problems."""

    def check(self, examples, split, where):
        """Return warnings (strings) about a split for ``taskbert validate``."""
        return []

    def label_list(self, example):
        """The categorical gold labels of an example, for ``taskbert debug data``: one for
        a classifier, one per word for a tagger, None when the gold is not categorical
        (spans, numbers). The default reads :meth:`gold`: a string or a list of strings."""
        gold = self.gold(example)
        if isinstance(gold, str):
            return [gold]
        if isinstance(gold, (list, tuple)) and all(isinstance(g, str) for g in gold):
            return list(gold)
        return None

    def check_encoding(self, tokenizer, max_length, config):
        """Check the options against the tokenizer, ``encoder.max_length`` and the encoder's
        config (``transformers`` ``PretrainedConfig``: depth, width) before any data is read or
        weights load; raise SpecError naming the ``task_options`` key.

        ``taskbert validate`` and ``taskbert run`` call it (through ``prepare``) with the
        spec's fast tokenizer and config, which they load (no weights) only for a task that
        overrides this method and an encoder no plugin claims. The default checks nothing.
        """

    def truncation(self, examples, tokenizer, max_length):
        """What ``max_length`` cuts, for ``taskbert debug data``: ``{unit: (cut, total)}``.

        The default counts examples whose encoding without a length limit is longer than
        ``max_length`` (a task that windows long inputs keeps the rest in more windows).
        Word- and span-level tasks override it to count the words or answers lost.
        """
        longest = [0] * len(examples)
        for row in self.encode_all(examples, tokenizer, 1_000_000):
            i = row["example_index"]
            longest[i] = max(longest[i], len(row["input_ids"]))
        return {"examples": (sum(n > max_length for n in longest), len(examples))}

    def encode(self, example, tokenizer, max_length):
        """Return a list of feature rows (dicts) for one example.

        Every row needs ``input_ids`` (list of int); ``token_type_ids`` and fields named
        in ``pad_fields`` are padded per batch; ints and floats become tensors; any other
        value stays a Python list in the batch (use it for offsets and bookkeeping).
        A task that overrides only :meth:`encode_all` gets this method for free.
        """
        if type(self).encode_all is Task.encode_all:
            raise NotImplementedError(f"{type(self).__name__} implements neither encode nor encode_all")
        rows = self.encode_all([example], tokenizer, max_length)
        for row in rows:
            row.pop("example_index", None)
        return rows

    def encode_all(self, examples, tokenizer, max_length):
        """Encode many examples (override to batch the tokenizer); returns rows, each
        carrying ``example_index``."""
        rows = []
        for i, example in enumerate(examples):
            for row in self.encode(example, tokenizer, max_length):
                row["example_index"] = i
                rows.append(row)
        return rows

    # ---------------------------------------------------------------- model
    def build_head(self, encoder):
        """Return the head ``nn.Module`` for this encoder (``encoder.config`` has sizes)."""
        raise NotImplementedError

    def read_positions(self, batch, training):
        """Which positions of the encoder's ``last_hidden_state`` the head reads in ``batch``:
        None (any of them), ``"first"`` (position 0 only: a [CLS] head), or a ``(batch, seq)``
        bool tensor. The head must read nothing else: a plugin's encoder pass (the CPU speed
        plugin's) may compute the last layer only there and leave zeros elsewhere, and
        ``pooler_output`` may then be None unless position 0 is read in every row."""
        return None

    def forward(self, encoder, head, batch):
        """Run encoder and head on a batch; return a dict of tensors. Override only when the
        encoder is not run once per batch and then the head (feature caches, pretraining);
        otherwise :class:`TaskModel` runs its ``encoder_pass`` over :meth:`read_positions`."""
        return head(whole_encoder(encoder, batch), batch)

    def loss(self, out, batch):
        """Scalar training loss from ``forward``'s output and the batch's labels."""
        raise NotImplementedError

    def reported_metrics(self):
        """The names ``score`` will report (``loss`` is always there too), or None when they
        are not known before the data is scored. ``validate`` and ``run`` check
        ``train.metric`` against them before any weights load; a task that looks metric
        names up in a registry should do so here, so a misspelt one fails early as well."""
        return None

    def trainable_encoder(self):
        """False keeps the encoder frozen (feature-based use)."""
        return True

    # -------------------------------------------------------------- outputs
    def collect(self, out, batch):
        """Per-row results of one evaluated batch as a list of Python objects, in the
        batch's row order (move tensors to CPU here)."""
        raise NotImplementedError

    def decode(self, results, rows, examples):
        """One user-facing prediction (a dict: labels, words, spans, never subword ids)
        per example, from the per-row ``results`` aligned with ``rows``."""
        raise NotImplementedError

    def score(self, predictions, examples):
        """Metrics dict for predictions against gold examples."""
        return {}

    def gold(self, example):
        """The gold answer of an example, written next to its prediction (or None)."""
        return None

    # ---------------------------------------------------------------- state
    def state_dict(self):
        """JSON-able state saved with the model (label names, vocabularies)."""
        return {}

    def load_state_dict(self, state):
        """Restore what :meth:`state_dict` returned."""

    def hf_config(self):
        """Keys added to the saved ``config.json`` (e.g. ``id2label``) so plain
        transformers loads the model with its head."""
        return {}

    def greater_is_better(self, metric):
        """Whether a larger value of ``metric`` is better."""
        return metric.split("/")[-1] not in self.lower_is_better


def whole_encoder(encoder, batch, positions=None):
    """The stock encoder pass: every layer at every position (``positions`` is ignored)."""
    return encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   token_type_ids=batch.get("token_type_ids"))


class TaskModel(nn.Module):
    """The pretrained encoder and a task head: the encoder pass, then the head (or the task's
    own ``forward`` when it overrides :meth:`Task.forward`).

    ``encoder_pass`` is :func:`whole_encoder` unless a plugin's ``taskbert_prepare_model``
    put an exact equivalent in its place (one that computes only the positions read)."""

    def __init__(self, task, encoder, head):
        super().__init__()
        self.task = task
        self.encoder = encoder
        self.head = head
        self.encoder_pass = whole_encoder
        if not task.trainable_encoder():
            for p in self.encoder.parameters():
                p.requires_grad_(False)

    def forward(self, batch):
        if type(self.task).forward is not Task.forward:   # a task that runs the encoder itself
            return self.task.forward(self.encoder, self.head, batch)
        positions = self.task.read_positions(batch, self.training)
        return self.head(self.encoder_pass(self.encoder, batch, positions), batch)


def masked_mean(values, mask):
    """Mean of ``values`` (batch, seq, dim) over positions where ``mask`` (batch, seq) is 1."""
    mask = mask.unsqueeze(-1).to(values.dtype)
    return (values * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def softmax_list(logits):
    """Softmax probabilities of a (rows, classes) tensor as a list of lists of floats."""
    return torch.softmax(logits.float(), dim=-1).cpu().tolist()
