"""pretraining: masked LM (80/10/10) and next-sentence prediction from raw text; WordPiece vocabularies.

The package is the plugin: its hooks are here, its code in the modules beside this file."""

from taskbert import EncoderSource, check_tokenizer, hookimpl, load_tokenizer

from .task import (  # noqa: F401  (the package's public names)
    Pretraining,
    PretrainingHead,
    PretrainingOptions,
    ScratchOptions,
    default_cache_dir,
    init_bert_weights,
)
from .text import read_documents
from .wordpiece import scratch_encoder, scratch_tokenizer, vocab_command


@hookimpl
def taskbert_register_tasks(register):
    register(Pretraining)


@hookimpl
def taskbert_register_readers(register):
    register("documents", read_documents)


@hookimpl
def taskbert_register_commands(cli):
    cli.add_command(vocab_command)


class ScratchSource(EncoderSource):
    """A fresh BERT and a WordPiece tokenizer trained on ``data.train`` (``task_options.scratch``):
    ``encoder.model`` is not read, and there is no tokenizer to check before the vocabulary is
    trained, when the run loads."""

    def __init__(self, spec):
        self.spec, self.name = spec, "scratch"
        self._tokenizer = None

    def check(self):
        if self.spec.encoder.tokenizer:
            check_tokenizer(self.spec)

    def tokenizer(self):
        """The spec's ``encoder.tokenizer`` when it names one (else none before training)."""
        if self.spec.encoder.tokenizer and self._tokenizer is None:
            self._tokenizer = load_tokenizer(check_tokenizer(self.spec), self.spec.encoder)
        return self._tokenizer

    def load(self):
        options = self.spec.options
        tokenizer = scratch_tokenizer(self.spec, options.cache_dir or default_cache_dir())
        return scratch_encoder(self.spec, tokenizer), tokenizer


@hookimpl
def taskbert_encoder_source(spec):
    """From scratch when ``task_options.scratch`` is set; None otherwise (the built-in source
    then loads ``encoder.model``)."""
    options = spec.options
    return ScratchSource(spec) if isinstance(options, PretrainingOptions) and options.scratch is not None else None
