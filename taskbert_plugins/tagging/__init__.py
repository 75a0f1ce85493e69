"""token_classification: one tag per word (POS, NER), with windows over long sentences.

The package is the plugin: its hooks are here, its code in the modules beside this file."""

from taskbert import hookimpl

from .task import (  # noqa: F401  (the package's public names)
    TaggingOptions,
    TokenClassification,
    TokenClassificationHead,
    special_tokens,
)


@hookimpl
def taskbert_register_tasks(register):
    register(TokenClassification)
