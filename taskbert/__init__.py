"""taskbert: fine-tune a pretrained BERT-style encoder for any NLP task from a YAML spec.

Public API: ``hookimpl`` (to write plugins), ``registries()`` (the tasks, readers, metrics
and loggers every plugin registered, e.g. ``registries().metrics.get(name)``), ``Task`` and
``TaskModel`` (to write tasks), the spec types, and the errors.
"""

__version__ = "0.1.0"

from .errors import DataError, RunError, SpecError, TaskbertError, UnknownNameError  # noqa: E402
from .hookspecs import hookimpl  # noqa: E402
from .plugins import registries  # noqa: E402
from .spec import DataSpec, EncoderSpec, Spec, TrainSpec, load_spec  # noqa: E402
from .task import NoOptions, Task, TaskModel  # noqa: E402

__all__ = [
    "hookimpl", "registries", "Task", "TaskModel", "NoOptions", "Spec", "EncoderSpec", "DataSpec",
    "TrainSpec", "load_spec", "TaskbertError", "SpecError", "DataError", "UnknownNameError",
    "RunError", "__version__",
]
