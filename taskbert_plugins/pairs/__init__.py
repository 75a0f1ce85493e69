"""sentence_pair: one label per pair of texts ([CLS] a [SEP] b [SEP], segment ids).

The package is the plugin: its hooks are here, its code in the modules beside this file."""

from taskbert import hookimpl

from .task import (  # noqa: F401  (the package's public names)
    PairOptions,
    SentencePair,
)


@hookimpl
def taskbert_register_tasks(register):
    register(SentencePair)
