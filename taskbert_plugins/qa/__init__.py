"""extractive_qa: answer spans over passages (SQuAD), windows over long passages.

The package is the plugin: its hooks are here, its code in the modules beside this file."""

from taskbert import hookimpl

from . import squad
from .task import ExtractiveQA, QAHead, QAOptions  # noqa: F401  (the package's public names)


@hookimpl
def taskbert_register_tasks(register):
    register(ExtractiveQA)


@hookimpl
def taskbert_register_readers(register):
    register("squad", squad.read_squad)


@hookimpl
def taskbert_register_metrics(register):
    register("squad_exact_match", squad.exact_match)
    register("squad_f1", squad.f1)
