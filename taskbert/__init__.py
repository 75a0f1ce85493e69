"""taskbert: fine-tune a pretrained BERT-style encoder for any NLP task from a YAML spec.

This module is the public API: what a plugin (the built-in ones included) may import. A
test (``tests/plugin_api/test_public_api.py``) fails when a built-in plugin imports anything
else from ``taskbert`` but :mod:`taskbert.testing`, the testing kit.

* writing plugins: ``hookimpl``, ``registries()`` (tasks, readers, metrics and loggers every
  plugin registered), ``get_plugin_manager()``, ``EncoderSource`` and the built-in
  ``PretrainedSource`` (a model source of a plugin's own);
* writing tasks: ``Task`` (the data side), ``Head`` (the model side), ``Skip``, ``NoOptions``,
  ``TaskModel``, ``whole_encoder``, ``softmax_list``, ``masked_mean``, ``head_dropout`` (the
  dropout an architecture's own head uses);
* specs and errors: ``load_spec``, ``Spec`` and its parts, ``TaskbertError`` and its kinds;
* running parts of a run from a plugin's own command: ``prepare`` (check a spec, read its
  data), ``load_encoder``, ``choose_format`` (the reader a data source is read with),
  ``encode_split``, ``pick_device``, ``check_encoder``,
  ``check_tokenizer``, ``load_tokenizer``, ``collate``, ``pad_id``, ``eval_batches``, ``EvalLoader``
  (rows to batches outside training), ``friendly`` and
  ``SET_HELP`` (click commands with one-line errors and ``--set``);
* files that are complete or absent: ``atomic_write``, ``atomic_json``, ``new_temp_folder``,
  ``temp_folder``, ``swap_in``, ``file_sha256``, ``source_identity`` (what a data source holds:
  the SHA-256 of a file or folder, a hub dataset's fingerprint).

The names of the last two groups load their modules on first use, so ``import taskbert``
stays light.
"""

import importlib

__version__ = "0.1.0"

from .config.spec import DataSpec, EncoderSpec, Spec, TrainSpec, load_spec  # noqa: E402
from .encoder import EncoderSource, PretrainedSource, head_dropout  # noqa: E402
from .errors import DataError, RunError, SpecError, TaskbertError, UnknownNameError  # noqa: E402
from .head import Head  # noqa: E402
from .plugins import get_plugin_manager, registries  # noqa: E402
from .plugins.hookspecs import hookimpl  # noqa: E402
from .task import NoOptions, Skip, Task, TaskModel, masked_mean, softmax_list, whole_encoder  # noqa: E402

#: public names whose module is imported on first use: name -> module
_LAZY = {
    "prepare": "run", "load_encoder": "run", "encode_split": "data.splits", "choose_format": "data.splits",
    "file_sha256": "data.splits",
    "pick_device": "train.optim", "check_encoder": "encoder", "check_tokenizer": "encoder",
    "load_tokenizer": "encoder", "collate": "data.batching", "eval_batches": "data.batching",
    "EvalLoader": "data.batching",
    "pad_id": "data.batching",
    "friendly": "cli.main", "SET_HELP": "cli.main", "atomic_write": "io", "atomic_json": "io",
    "new_temp_folder": "io", "temp_folder": "io", "swap_in": "io", "source_identity": "data.sources",
}


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'taskbert' has no attribute {name!r}")


__all__ = [
    "hookimpl", "registries", "get_plugin_manager", "EncoderSource", "PretrainedSource", "head_dropout",
    "Task", "Skip",
    "Head", "TaskModel", "NoOptions", "whole_encoder",
    "softmax_list", "masked_mean", "Spec", "EncoderSpec", "DataSpec", "TrainSpec", "load_spec",
    "TaskbertError", "SpecError", "DataError", "UnknownNameError", "RunError", "__version__",
    *_LAZY,
]
