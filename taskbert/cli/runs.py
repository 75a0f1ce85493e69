"""Predictions from a saved model folder (a run's ``best/``) on new inputs.

``load_run(path)`` accepts a run folder (it uses ``best/``) or a model folder with a
``taskbert.json``; ``predict_file`` reads jsonl/csv/tsv records or plain text lines.
"""

import dataclasses
import json
import os
import re

import yaml

from ..config.schema import build, predict_options
from ..data.splits import EXTENSION_FORMATS, TABULAR_EXTENSIONS, check_file
from ..errors import DataError, SpecError
from ..plugins.manager import registries
from ..train import checkpoint as ckpt


class LoadedModel:
    """A task, its model and tokenizer, restored from a model folder."""

    def __init__(self, folder, task, model, tokenizer, max_length, info):
        self.folder, self.task, self.model, self.tokenizer = folder, task, model, tokenizer
        self.max_length, self.info = max_length, info
        self.prepared = False   # plugins' taskbert_prepare_model runs on first use


def _several_tasks(path):
    """``(folder, {name: task name})`` of a run of several tasks (``path`` or ``path/best``
    holds ``multitask.json``), else ``(None, None)``."""
    from ..multitask import member_folders

    for candidate in (path, os.path.join(path, "best")):
        names = member_folders(candidate)
        if names is not None:
            return candidate, names
    return None, None


def run_tasks(path):
    """``{name: model folder}`` of a run of several tasks (``path`` or ``path/best``), else None."""
    folder, names = _several_tasks(path)
    return None if names is None else {name: os.path.join(folder, name) for name in names}


def task_folder(path, task=None):
    """The folder to load for ``--task``: ``path`` itself, or for a multi-task run (or its
    ``best/``) the model folder of task ``task`` (``best/NAME``)."""
    folder, names = _several_tasks(path)
    if names is None:
        if task is not None:
            raise SpecError(f"--task: {path} is not a run of several tasks; leave out --task")
        return path
    listed = ", ".join(f"{n} ({t})" for n, t in names.items())
    if task is None:
        raise SpecError(f"{path}: a run of several tasks ({listed}); pass --task NAME to choose one "
                        f"(or give {os.path.join(folder, 'NAME')})")
    if task not in names:
        raise SpecError(f"--task: {task!r} is not a task of {path}; its tasks: {listed}")
    return os.path.join(folder, task)


def find_model_folder(path):
    """``path`` itself when it holds ``taskbert.json``, else ``path/best``."""
    for candidate in (path, os.path.join(path, "best")):
        if os.path.exists(os.path.join(candidate, ckpt.TASK_FILE)):
            return candidate
    task_folder(path)   # a multi-task run: says to pass --task
    raise SpecError(f"{path}: not a taskbert run or model folder (no {ckpt.TASK_FILE} "
                    f"in it or in {os.path.join(path, 'best')})")


def key_values(items, flag):
    """``{key: value}`` from repeated ``FLAG KEY=VALUE`` items, each value read as YAML."""
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"{flag}: expected KEY=VALUE, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def task_option_overrides(items):
    """``{name: value}`` from ``--task-option KEY=VALUE`` items."""
    return key_values(items, "--task-option")


def _with_overrides(task_cls, saved, overrides):
    """The run's ``task_options`` with the ``--task-option`` values that may change at predict
    time (fields marked ``metadata={"predict": True}``); any other is one line."""
    allowed = predict_options(task_cls.Options)
    for key in overrides:
        if key not in allowed:
            fields = {f.name for f in dataclasses.fields(task_cls.Options)}
            why = "is fixed by the trained model" if key in fields else f"is not an option of task {task_cls.name!r}"
            raise SpecError(f"--task-option {key}: {why}; options predict may change: "
                            f"{', '.join(allowed) or 'none'}")
    return {**saved, **overrides}


def load_task(folder, task_options=None):
    """The task instance and ``taskbert.json`` contents of a model folder (no weights);
    ``task_options`` changes the options that may change at predict time."""
    with open(os.path.join(folder, ckpt.TASK_FILE), encoding="utf-8") as fh:
        info = json.load(fh)
    task_cls = registries().tasks.get(info["task"], where=f"{folder}/{ckpt.TASK_FILE}: task")
    saved = info.get("task_options") or {}
    given = _with_overrides(task_cls, saved, task_options) if task_options else saved
    options = build(task_cls.Options, given, "task_options",
                    {"file": "--task-option" if task_options else os.path.join(folder, ckpt.TASK_FILE), "base": None})
    task = task_cls(options)
    task.load_state_dict(info.get("task_state") or {})
    return task, info


def load_run(path, task_options=None):
    """Restore task, encoder, head and tokenizer from a run or model folder (``task_options``:
    see :func:`load_task`)."""
    from ..encoder import load_model, load_tokenizer
    from ..task import TaskModel, build_head_for

    folder = find_model_folder(path)
    task, info = load_task(folder, task_options)
    encoder = load_model(folder)
    tokenizer = load_tokenizer(folder)
    if task_options:   # a changed option is checked as a run checks it
        try:
            task.check_encoding(tokenizer, info.get("max_length") or 128, encoder.config)
        except SpecError as exc:
            raise SpecError(f"--task-option: {exc}") from exc
    head = build_head_for(task, encoder, tokenizer)
    model = TaskModel(encoder, head, train_encoder=task.trainable_encoder())
    ckpt.load_head_state(folder, head, info.get("encoder_prefix", "bert"))
    ckpt.load_encoder_state(folder, model)
    model.eval()
    return LoadedModel(folder, task, model, tokenizer, info.get("max_length") or 128, info)


def input_format(path, task, fmt=None):
    """The reader for a predict input: ``fmt``, else the task's own format (CoNLL for
    taggers) for any extension but .jsonl/.csv/.tsv/.parquet/.arrow, else one from the extension (.txt: plain
    text lines); an unknown extension is an error, as for training data."""
    ext = os.path.splitext(path)[1].lower()
    chosen = fmt or (task.default_format if task.default_format and ext not in TABULAR_EXTENSIONS
                     else None) or EXTENSION_FORMATS.get(ext)
    if chosen is None:
        raise DataError(f"{path}: cannot tell the format from the extension {ext or '(none)'!r}; "
                        f"pass --format (text: one input a line; or one of: {', '.join(registries().readers.names())})")
    return chosen


def run_format(info, path):
    """The run's ``data.format`` when ``path`` has its training file's extension (a plugin's
    reader for ``.yaml`` data then reads ``.yaml`` inputs too), else None."""
    data = (info.get("spec") or {}).get("data") or {}
    train = data.get("train")
    if data.get("format") and isinstance(train, str) and \
            os.path.splitext(train)[1].lower() == os.path.splitext(path)[1].lower():
        return data["format"]
    return None


def run_reader_options(info, fmt, task):
    """The ``data.reader_options`` a run was trained with, when its training data used reader
    ``fmt`` (the same separator and columns then apply to predict inputs); else ``{}``."""
    data = (info.get("spec") or {}).get("data") or {}
    train = data.get("train")
    if not isinstance(train, str):   # none, or a hub dataset (its reader takes no options)
        return {}
    try:
        if input_format(train, task, data.get("format")) != fmt:
            return {}
    except DataError:   # a save_to_disk folder: no extension
        return {}
    return dict(data.get("reader_options") or {})


def predict_hint(message, task):
    """``message`` with "set task_options.KEY" (advice for a spec) turned into what changes
    it for ``predict`` and ``serve``, ``--task-option KEY=...``, when KEY may change there."""
    changeable = predict_options(type(task.options)) if dataclasses.is_dataclass(task.options) else ()
    return re.sub(r"set task_options\.(\w+)",
                  lambda m: f"--task-option {m[1]}=..." if m[1] in changeable else m[0], message)


def read_inputs(path, task, fmt=None, reader_options=None, labelled=False):
    """Examples from a jsonl/csv/tsv file (records), a file in the task's own format, or
    plain text lines."""
    check_file(path, "INPUT")
    fmt = input_format(path, task, fmt)
    readers = registries().readers
    reader = readers.get(fmt, where="--format")
    examples = []
    for line_no, record in reader(path, dict(reader_options or {})):
        if fmt == "text":
            try:
                record = task.record_from_text(record["text"])
            except DataError as exc:   # the task knows what is wrong, the reader where
                raise DataError(f"{path}:{line_no}: {exc}") from exc
        try:
            example = task.example_from_record(record, f"{path}:{line_no}", labelled=labelled)
        except DataError as exc:
            raise DataError(predict_hint(str(exc), task)) from exc
        if example is not None:
            examples.append(example)
    if not examples:
        raise DataError(f"{path}: holds no inputs")
    return examples


def predict_examples(loaded, examples, batch_size=64):
    """One prediction dict per example."""
    from ..data.batching import pad_id
    from ..inference import run_inference
    from ..train.optim import pick_device

    device = pick_device()
    loaded.model.to(device)
    if not loaded.prepared:
        from ..plugins.manager import hook

        hook().taskbert_prepare_model(model=loaded.model, device=device, phase="predict")
        loaded.prepared = True
    rows = loaded.task.encode_all(examples, loaded.tokenizer, loaded.max_length)
    for i, row in enumerate(rows):
        row["feature_index"] = i
    results, _ = run_inference(loaded.model, loaded.task, rows, batch_size, pad_id(loaded.tokenizer), device)
    return loaded.task.decode(results, rows, examples)
