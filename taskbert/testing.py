"""Fixtures for plugin authors and for taskbert's own tests.

* ``make_tiny_encoder(folder, words)``: a randomly initialised BERT of a few thousand
  parameters and a WordPiece tokenizer over ``words``, saved as a model folder any spec
  can name in ``encoder.model`` — no network, trains in seconds on a CPU.
* ``run_spec(spec_dict, folder)``: write a spec into ``folder`` and run it, returning the
  final metrics and the run folder (``write_spec`` only writes it).
* ``write_polarity_data(path, n, seed)``: a learnable synthetic sentiment set (jsonl) over
  ``TINY_WORDS``; ``tiny_encoder`` and ``polarity_data`` are pytest fixtures over it, for a
  plugin's tests: ``from taskbert.testing import tiny_encoder, polarity_data``;
  ``write_long_polarity_data`` puts the deciding word near the end of long texts.
* ``check_task_class(cls)``: the contract checks the core relies on, as one call.
* ``crash_at(step)``: a context in which a run raises :class:`Crash` right after its first
  metrics line of ``step``, to test that a plugin's state survives ``--resume``.
"""

import contextlib
import dataclasses
import json
import os
import random

import yaml

from .plugins.hookspecs import hookimpl

POSITIVE = "good great fine superb lovely nice".split()
NEGATIVE = "bad awful poor terrible ugly nasty".split()
FILLER = "the movie was plot actor scene film a an and it".split()
#: names and places for tagging examples ("alice works at acme corp")
NAMES = "alice bob paris london went to in lives works at acme corp".split()
#: every word of the synthetic data; the tiny encoder's vocabulary covers them
TINY_WORDS = POSITIVE + NEGATIVE + FILLER + NAMES

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_tokenizer(words, folder=None, lowercase=True):
    """A BERT WordPiece fast tokenizer whose vocabulary is the special tokens, the
    characters of ``words`` (as pieces and ``##`` continuations) and the words."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )
    from transformers import PreTrainedTokenizerFast

    vocab = list(SPECIAL)
    chars = sorted({c for w in words for c in (w.lower() if lowercase else w)})
    for piece in chars + ["##" + c for c in chars] + [w.lower() if lowercase else w for w in words]:
        if piece not in vocab:
            vocab.append(piece)
    ids = {tok: i for i, tok in enumerate(vocab)}
    tok = Tokenizer(models.WordPiece(ids, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])])
    tok.decoder = decoders.WordPiece(prefix="##")
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_input_names=["input_ids", "token_type_ids", "attention_mask"])
    if folder:
        fast.save_pretrained(folder)
    return fast


def make_tiny_encoder(folder, words, hidden=32, layers=2, heads=2, max_positions=128, seed=0,
                      model_type="bert", **config):
    """Save a tiny random encoder and its WordPiece tokenizer in ``folder``; return the folder.

    ``model_type`` names another BERT-like architecture of transformers (``roberta``,
    ``electra`` ...) built with the same sizes; RoBERTa-style models get
    ``max_positions`` + ``pad id`` + 1 positions, as theirs count from after the pad id.
    ``config`` sets further config keys of another architecture (ELECTRA's ``embedding_size``)."""
    import torch
    from transformers import AutoConfig, AutoModel, BertConfig, BertModel

    os.makedirs(folder, exist_ok=True)
    tokenizer = make_tokenizer(words, folder)
    torch.manual_seed(seed)
    sizes = dict(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                 num_attention_heads=heads, intermediate_size=hidden * 2,
                 max_position_embeddings=max_positions, type_vocab_size=2,
                 hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    if model_type == "bert":
        BertModel(BertConfig(**sizes)).save_pretrained(folder)
        return folder
    pad = tokenizer.pad_token_id
    if model_type in ("roberta", "xlm-roberta", "camembert"):
        sizes["max_position_embeddings"] = max_positions + pad + 1
    config = AutoConfig.for_model(model_type, pad_token_id=pad, bos_token_id=tokenizer.cls_token_id,
                                  eos_token_id=tokenizer.sep_token_id, **{**sizes, **config})
    AutoModel.from_config(config).save_pretrained(folder)
    return folder


def write_spec(spec, folder, name="spec.yaml"):
    """Write ``spec`` (a dict) as YAML to ``folder/name`` (folder made if missing); return the path."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(spec, fh, sort_keys=False)
    return path


def run_spec(spec, folder, name="spec.yaml", overrides=(), overwrite=True, resume=False):
    """Write ``spec`` (a dict) to ``folder/name``, run it, return (metrics, run folder);
    ``resume=True`` continues the run from its newest checkpoint (``taskbert run --resume``)."""
    from .config.spec import load_spec
    from .run import execute

    loaded = load_spec(write_spec(spec, folder, name), overrides)
    metrics = execute(loaded, resume=resume, overwrite=overwrite and not resume)
    return metrics, loaded.output


def run_cli(*args):
    """Run ``taskbert ARGS...`` in this process (click's test runner); return ``(exit code,
    stdout, stderr)``, e.g. ``run_cli("predict", run_dir, "texts.txt")``."""
    from click.testing import CliRunner

    from .cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def write_polarity_data(path, n, seed):
    """Write ``n`` jsonl records ``{text, label}``: filler words plus one polar word, the
    label (``pos``/``neg``) following it. A tiny encoder learns it in seconds; chance is 0.5."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(n):
            positive = rng.random() < 0.5
            words = [rng.choice(FILLER) for _ in range(rng.randint(3, 12))]
            words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if positive else NEGATIVE))
            fh.write(json.dumps({"text": " ".join(words), "label": "pos" if positive else "neg"}) + "\n")
    return str(path)


def write_long_polarity_data(path, n, seed, words=(40, 60)):
    """Like :func:`write_polarity_data`, but each text has 40-60 filler words and its one polar
    word among the last six: a model that reads only a text's start (truncation) stays at
    chance; one that reads it all (``long_inputs: windows``) learns it."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(n):
            positive = rng.random() < 0.5
            text = [rng.choice(FILLER) for _ in range(rng.randint(*words))]
            text.insert(len(text) - rng.randint(0, 5), rng.choice(POSITIVE if positive else NEGATIVE))
            fh.write(json.dumps({"text": " ".join(text), "label": "pos" if positive else "neg"}) + "\n")
    return str(path)


def tiny_classification_spec(encoder, train, validation, output, **train_options):
    """A spec dict that trains ``sentence_classification`` with the tiny encoder on the
    polarity data in a few seconds; ``train_options`` override the ``train:`` section."""
    train_section = {"epochs": 3, "batch_size": 16, "lr": 3.0e-3, "log_every": 5, "seed": 3, "loggers": []}
    train_section.update(train_options)
    return {"task": "sentence_classification", "encoder": {"model": encoder, "max_length": 32},
            "data": {"train": train, "validation": validation}, "train": train_section,
            "output": str(output)}


def check_task_class(cls):
    """Raise AssertionError naming the first broken part of a Task subclass's contract:
    a name, a description, a dataclass ``Options`` whose fields all have defaults or are
    documented, and the methods every task must override."""
    from .config.schema import describe
    from .task import Task

    assert isinstance(cls, type) and issubclass(cls, Task), f"{cls!r} is not a taskbert.Task subclass"
    assert cls.name and cls.name.isidentifier(), f"{cls.__name__}.name must be an identifier, got {cls.name!r}"
    assert cls.description, f"{cls.__name__}.description is empty (taskbert tasks and init show it)"
    assert dataclasses.is_dataclass(cls.Options), f"{cls.__name__}.Options must be a dataclass"
    describe(cls.Options)  # every field type must be one the spec checker understands
    if getattr(cls, "loss", None) is not None or getattr(cls, "forward", None) is not None:
        raise AssertionError(f"{cls.__name__} defines loss or forward: the head computes the loss "
                             f"in its forward (a taskbert.Head), and Task.prepare_batch shapes inputs")
    for method in ("example_from_record", "encode", "build_head", "collect", "decode"):
        if getattr(cls, method) is getattr(Task, method) and not (
                method == "encode" and cls.encode_all is not Task.encode_all):
            raise AssertionError(f"{cls.__name__} must override Task.{method}")
    task = cls()  # the default options must build
    reported = task.reported_metrics()
    if reported is not None and task.default_metric not in ("loss", *reported):
        raise AssertionError(f"{cls.__name__}.default_metric {task.default_metric!r} is not among the "
                             f"metrics reported_metrics() names ({', '.join(reported)}) or 'loss'")


class Crash(Exception):
    """What :func:`crash_at` raises in place of a crash."""


class _CrashAt:
    def __init__(self, step):
        self.step = step

    @hookimpl
    def taskbert_log_metrics(self, trainer, step, metrics):
        if step == self.step and not metrics.get("final"):
            raise Crash(step)


@contextlib.contextmanager
def crash_at(step):
    """Runs started inside raise :class:`Crash` right after their first metrics line of
    optimizer step ``step`` (the line is written; the checkpoint of that step is not). Only
    a step that writes a line crashes: a log step (``train.log_every``) or an evaluation;
    any other step runs on and the run finishes."""
    from .plugins.manager import get_plugin_manager

    pm = get_plugin_manager()
    pm.register(_CrashAt(step), name="taskbert-testing-crash")
    try:
        yield
    finally:
        pm.unregister(name="taskbert-testing-crash")


try:  # fixtures for plugin test suites; taskbert itself runs without pytest
    import pytest
except ImportError:  # pragma: no cover
    pytest = None

if pytest is not None:
    @pytest.fixture(scope="session")
    def tiny_encoder(tmp_path_factory):
        """A saved tiny random BERT whose vocabulary covers ``TINY_WORDS``."""
        return make_tiny_encoder(str(tmp_path_factory.mktemp("tiny-encoder")), TINY_WORDS)

    @pytest.fixture()
    def polarity_data(tmp_path):
        """``(train, validation)`` jsonl paths of the synthetic sentiment set (400 / 100)."""
        return (write_polarity_data(tmp_path / "train.jsonl", 400, 1),
                write_polarity_data(tmp_path / "validation.jsonl", 100, 2))
