"""pretraining: masked LM (80/10/10) and next-sentence prediction from raw text; WordPiece vocabularies.

The package is the plugin: its hooks are here, its code in the modules beside this file."""

from taskbert import hookimpl

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


@hookimpl
def taskbert_claims_encoder(spec):
    """From scratch, ``encoder.model`` is not read: this plugin builds the encoder."""
    options = spec.options
    return True if isinstance(options, PretrainingOptions) and options.scratch is not None else None


@hookimpl
def taskbert_load_encoder(spec):
    """A fresh BERT and a trained WordPiece tokenizer when ``task_options.scratch`` is set;
    None otherwise (the built-in loader then loads ``encoder.model``)."""
    options = spec.options
    if not isinstance(options, PretrainingOptions) or options.scratch is None:
        return None
    tokenizer = scratch_tokenizer(spec, options.cache_dir or default_cache_dir())
    return scratch_encoder(spec, tokenizer), tokenizer
