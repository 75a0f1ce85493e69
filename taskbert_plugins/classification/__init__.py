"""sentence_classification: one label per text from the [CLS] vector.

The package is the plugin: its hooks are here, its code in the modules beside this file."""

from taskbert import hookimpl

from .task import (  # noqa: F401  (the package's public names)
    DROPPED,
    ClassificationHead,
    ClassificationOptions,
    OwnClassificationHead,
    SentenceClassification,
    TextLabelTask,
    classification_head,
    is_blank,
    is_label,
    label_order,
    label_text,
    normalize_label_options,
)


@hookimpl
def taskbert_register_tasks(register):
    register(SentenceClassification)
