"""The Task base class (the data side of a task) and the model that joins a pretrained
encoder to a task's head (:class:`taskbert.Head`, the model side).

The core moves tensors and files; a task says what they mean. Subclass :class:`Task`,
give it a ``name`` and an ``Options`` dataclass, and register it through the
``taskbert_register_tasks`` hook. The life of an example::

    record (dict from a reader) --example_from_record--> example
    example --encode--> feature rows (one or more windows, lists of token ids)
    rows --(core: bucket, pad, collate)--> batch --prepare_batch--> model input
    TaskModel(encoder, head)(batch) --> head output, with "loss" when labelled (training)
    head output --collect--> per-row results --decode--> one prediction per example
    predictions + examples --score--> metrics
"""

import inspect
from dataclasses import dataclass
from typing import ClassVar, Optional

import torch
from torch import nn

from .errors import RunError


@dataclass(frozen=True)
class NoOptions:
    """Options of a task that takes none."""


@dataclass(frozen=True)
class Skip:
    """What :meth:`Task.example_from_record` returns for a record it leaves out on purpose.

    The core counts skipped records per file and reason and reports them once (``validate``,
    ``run``): ``"train.jsonl: skipped 3 records whose label is in task_options.drop_labels"``,
    so ``reason`` completes "skipped N records ...". (Returning None skips without a word.)
    """

    reason: str


#: metric names ending in these are smaller-is-better for every task (a plugin's
#: ``hamming_loss`` or ``word_error``), besides a task's own :attr:`Task.lower_is_better`
LOWER_SUFFIXES = ("loss", "error", "perplexity", "mse", "mae", "rmse")


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
    #: metric names where smaller is better; names ending in ``loss``, ``error``, ``perplexity``,
    #: ``mse``, ``mae`` or ``rmse`` are too (:meth:`greater_is_better`)
    lower_is_better: ClassVar[tuple] = ("loss", "perplexity")
    #: per-token fields besides input_ids/token_type_ids (a list as long as the row's
    #: input_ids), with their padding value: ``{"labels": -100}`` for a tagger; none by default
    pad_fields: ClassVar[dict] = {}
    #: per-row fixed-size numeric fields (a list of numbers, the same length in every row)
    #: that a batch stacks into one ``(rows, size)`` tensor, e.g. a multi-label target
    vector_fields: ClassVar[tuple] = ()
    #: True when the feature rows of one example (a long document's windows) must go through
    #: the model together: batches then hold whole examples (``batch_size`` still bounds their
    #: rows; an example with more rows gets a batch alone), a distributed run shares out
    #: examples, not rows, and the loss and ``samples`` are counted per example; the head
    #: sees each row's ``example_index``. An instance attribute may set it from the options.
    whole_examples: ClassVar[bool] = False
    #: architecture name written to ``best/config.json`` so plain transformers loads it
    hf_architecture: ClassVar[Optional[str]] = None
    #: the data format used for files whose extension says nothing (e.g. ``conll``)
    default_format: ClassVar[Optional[str]] = None
    #: what ``taskbert report`` compares in a confusion matrix: ``"per_example"`` (gold and
    #: prediction are one label), ``"per_word"`` (lists of labels, one per word), None (no
    #: categorical answer: spans, scores, sets of labels); ``"guess"``: by the shape of the gold
    report_labels: ClassVar[Optional[str]] = "guess"

    def __init__(self, options=None):
        self.options = options if options is not None else self.Options()

    # ----------------------------------------------------------------- data
    def example_from_record(self, record, where, labelled=True):
        """Turn one reader record into an example; raise DataError naming ``where``.

        ``where`` is ``"file:line"``. With ``labelled=False`` (prediction) the gold
        label may be absent. Return :class:`Skip` to leave the record out with a reason the
        core reports (None leaves it out silently).
        """
        raise NotImplementedError

    def record_from_text(self, line):
        """The record for one line of plain text given to ``taskbert predict`` (or a string
        sent to ``serve``): ``{text_field: line}`` when the task's options have a
        ``text_field``, else ``{"text": line}``."""
        return {getattr(self.options, "text_field", None) or "text": line}

    def data_labels(self, names):
        """The classes the data itself declares, ``{field: [name, ...]}`` in id order (a
        ``datasets`` ``ClassLabel`` column, or a sequence of them for tags), called as each
        split is read and before :meth:`setup`. The reader already gives records the names, not
        the ids; a task that builds its label list from the data may take this order instead
        (so ``id2label`` matches the dataset's). The default ignores it."""

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
        spec's fast tokenizer and config, which the encoder source loads (no weights) only for
        a task that overrides this method, and only when it has a tokenizer before loading
        (an encoder built from scratch has none). The default checks nothing.
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
        in ``pad_fields`` are padded per batch; ints and floats become tensors, and so do the
        lists of numbers named in ``vector_fields``; any other value stays a Python list in
        the batch (use it for offsets and bookkeeping).
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
        carrying ``example_index``.

        An override may take a keyword ``split``: the core then says which split the examples
        are ("train", "validation", "test"; None for inputs to ``predict``), for an encoding
        that differs in training (pretraining duplicates the training documents only)."""
        rows = []
        for i, example in enumerate(examples):
            for row in self.encode(example, tokenizer, max_length):
                row["example_index"] = i
                rows.append(row)
        return rows

    def added_tokens(self):
        """Tokens to add to the tokenizer before anything is encoded (markers such as
        ``"[E1]"``): added as special tokens, so never split; the core grows the encoder's
        embeddings to match (new rows randomly initialised, then trained), and ``best/`` saves
        the grown tokenizer and embeddings, so ``predict`` and plain transformers see them.
        Called after :meth:`setup`. The default adds none."""
        return []

    # ---------------------------------------------------------------- model
    def build_head(self, encoder, tokenizer=None):
        """Return the :class:`taskbert.Head` for this encoder (``encoder.config`` has sizes).

        Called after :meth:`setup` and :meth:`added_tokens`, before any :meth:`encode`; the
        tokenizer (with the added tokens) is passed when the method takes a ``tokenizer``
        argument, e.g. for the id of a marker token: ``def build_head(self, encoder,
        tokenizer)``. ``def build_head(self, encoder)`` is called without it."""
        raise NotImplementedError

    def prepare_batch(self, batch, training):
        """The model's input from a collated batch on its device, just before the model runs
        (training, evaluation and prediction alike): the default returns it as it is. A task
        whose inputs depend on the step, such as masked LM's masks, makes them here, so the
        model itself is a plain ``TaskModel(encoder, head)``."""
        return batch

    def reported_metrics(self):
        """The names ``score`` will report (``loss`` is always there too), or None when they
        are not known before the data is scored. ``validate`` and ``run`` check
        ``train.metric`` against them before any weights load; a task that looks metric
        names up in a registry should do so here, so a misspelt one fails early as well."""
        return None

    def trainable_encoder(self):
        """False keeps the encoder frozen (feature-based use)."""
        return True

    # ------------------------------------------------------------- lifecycle
    def on_train_start(self, trainer):
        """Called on the main process before the first optimizer step of ``taskbert run``
        (after a resume is applied and the plugins' ``taskbert_train_start``, so the loggers
        exist): fill caches, log a starting evaluation with ``trainer.record(metrics)``. The
        default does nothing."""

    def on_train_end(self, trainer, metrics):
        """Called after the final evaluation with the final record, before the plugins'
        ``taskbert_train_end``: write the task's own files into ``trainer.run_dir``."""

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
        """Whether a larger value of ``metric`` is better: not for a name in
        :attr:`lower_is_better`, nor for one ending in :data:`LOWER_SUFFIXES` (``hamming_loss``)."""
        name = metric.split("/")[-1]
        return name not in self.lower_is_better and not name.endswith(LOWER_SUFFIXES)


def takes(method, keyword):
    """Whether ``method`` takes the keyword argument ``keyword`` (optional parts of the Task
    contract that older tasks leave out: ``build_head(tokenizer=)``, ``encode_all(split=)``)."""
    return keyword in inspect.signature(method).parameters


def build_head_for(task, encoder, tokenizer):
    """``task.build_head`` with the tokenizer when its signature takes one."""
    if takes(task.build_head, "tokenizer"):
        return task.build_head(encoder, tokenizer=tokenizer)
    return task.build_head(encoder)


def add_task_tokens(task, tokenizer, encoder=None):
    """Add ``task.added_tokens()`` to the tokenizer (special: never split) and grow the
    encoder's input embeddings to the tokenizer's size; the number of tokens added."""
    tokens = list(task.added_tokens() or [])
    if isinstance(task.added_tokens(), str) or not all(isinstance(t, str) and t for t in tokens):
        raise RunError(f"task {task.name!r}: added_tokens must return a list of non-empty strings, "
                       f"got {task.added_tokens()!r}")
    added = tokenizer.add_tokens(tokens, special_tokens=True) if tokens else 0
    if encoder is not None and len(tokenizer) > encoder.get_input_embeddings().num_embeddings:
        encoder.resize_token_embeddings(len(tokenizer))
    return added


def whole_encoder(encoder, batch, positions=None):
    """The stock encoder pass: every layer at every position (``positions`` is ignored)."""
    return encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   token_type_ids=batch.get("token_type_ids"))


class TaskModel(nn.Module):
    """The pretrained encoder and a task head (:class:`taskbert.Head`): the encoder pass,
    then the head; ``TaskModel(encoder, head)(batch)`` returns the head's dict (with
    ``"loss"`` when the batch holds labels). ``train_encoder=False`` freezes the encoder.

    ``encoder_pass`` is :func:`whole_encoder` unless a plugin's ``taskbert_prepare_model``
    put an exact equivalent in its place (one that computes only the positions read)."""

    def __init__(self, encoder, head, train_encoder=True):
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.encoder_pass = whole_encoder
        if not train_encoder:
            for p in self.encoder.parameters():
                p.requires_grad_(False)

    def forward(self, batch):
        if self.head.run_encoder is not None:   # a head that reads the encoder its own way
            out = self.head.run_encoder(self.encoder, batch)
        else:
            out = self.encoder_pass(self.encoder, batch, self.head.read_positions(batch, self.training))
        return self.head(out, batch)


def batch_loss(out, batch):
    """The scalar loss of a head's output dict; one clear error when the head gave none."""
    loss = out.get("loss") if isinstance(out, dict) else None
    if loss is None:
        raise RunError("the task's head returned no 'loss' for a labelled batch: a head computes "
                       "its loss in forward when the batch holds labels (docs/plugins.md)")
    return loss


def masked_mean(values, mask):
    """Mean of ``values`` (batch, seq, dim) over positions where ``mask`` (batch, seq) is 1."""
    mask = mask.unsqueeze(-1).to(values.dtype)
    return (values * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def softmax_list(logits):
    """Softmax probabilities of a (rows, classes) tensor as a list of lists of floats."""
    return torch.softmax(logits.float(), dim=-1).cpu().tolist()
