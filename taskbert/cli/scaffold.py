"""Starter files: ``taskbert init --task NAME`` (a commented spec) and
``taskbert new-plugin NAME`` (a plugin package).

The spec is written from the dataclasses themselves (``schema.describe``): every key of
every section with its default and the ``help`` of its field metadata, and the task's own
``Options`` the same way, so a third-party task gets a documented starter spec for free.
The plugin package comes from ``taskbert/cli/templates/plugin`` (``string.Template``).
"""

import dataclasses
import os
import re
import string
import typing

import click
import yaml

from ..config.schema import describe
from ..errors import SpecError
from .main import cli, friendly

TEMPLATES = os.path.join(os.path.dirname(__file__), "templates")
COMMENT_COLUMN = 34


def _default_metric(task_cls):
    """The metric a task picks ``best/`` by with its default options: some tasks set it per
    instance from their options (entity F1 or accuracy for taggers, pearson for regression)."""
    try:
        return task_cls().default_metric
    except Exception:   # a task whose options have no defaults: what the class says
        return task_cls.default_metric


def _scalar(value):
    """A value in YAML flow style on one line (``[a, b]``, ``{}``, ``null``, ``5.0e-05``)."""
    if isinstance(value, tuple):
        value = list(value)
    text = yaml.safe_dump([value], default_flow_style=True, width=10_000).strip()
    return text[1:-1]  # drop the list brackets added to keep scalars on one line


def _line(indent, key, value, comment):
    text = f"{'  ' * indent}{key}: {value}"
    if comment:
        text = f"{text.ljust(COMMENT_COLUMN - 1)} # {comment}"
    return text


def _fields(cls, indent, overrides=None, notes=None):
    """YAML lines for the fields of dataclass ``cls``; nested dataclasses as blocks."""
    overrides, notes = overrides or {}, notes or {}
    hints = typing.get_type_hints(cls)
    lines = []
    for name, type_name, default, help_text in describe(cls):
        if dataclasses.is_dataclass(hints[name]):
            doc = (hints[name].__doc__ or "").split("\n")[0]
            doc = doc.split("—", 1)[-1].strip()  # "``data.limit:`` — what it does" -> what it does
            lines.append(_line(indent, name, "", help_text or doc).rstrip())
            lines.extend(_fields(hints[name], indent + 1))
            continue
        comment = notes.get(name) or help_text or type_name
        if type_name.startswith("one of") and type_name not in comment:
            comment = f"{comment}; {type_name}" if comment != type_name else comment
        if default is dataclasses.MISSING and name not in overrides:
            value, comment = "null", f"REQUIRED: {comment}"
        else:
            value = overrides.get(name, _scalar(default))
        lines.append(_line(indent, name, value, comment))
    return lines


def init_spec(task_name):
    """The text of a commented starter spec for a registered task."""
    from ..config.spec import DataSpec, EncoderSpec, TrainSpec
    from ..plugins.manager import registries

    regs = registries()
    task_cls = regs.tasks.get(task_name, where="--task")
    ext = {"conll": "txt", "wordtag": "txt", "text": "txt", "documents": "txt", "csv": "csv", "tsv": "tsv"}.get(
        task_cls.default_format or "jsonl", "json" if task_cls.default_format else "jsonl")
    out = [
        f"# A starter spec for task {task_name!r} ({regs.tasks.owner(task_name)}):",
        f"#   {task_cls.description or task_cls.__doc__ or ''}".rstrip(),
        "# Every key is shown with its default; delete the ones you keep as they are.",
        "# Relative paths resolve against this file's folder.",
        "# Check it (no weights load):  taskbert validate THIS_FILE",
        "# Train it:                    taskbert run THIS_FILE",
        f"task: {task_name}",
        "encoder:",
        *_fields(EncoderSpec, 1),
        "data:",
        *_fields(DataSpec, 1, overrides={"train": f"data/train.{ext}", "validation": f"data/validation.{ext}"},
                 notes={"train": "your training file (taskbert run needs it)",
                        "validation": "evaluated during training; picks best/",
                        "test": "evaluated once, with the best model",
                        "format": "reader: " + ", ".join(regs.readers.names())
                        + (f" (this task's default: {task_cls.default_format})" if task_cls.default_format
                           else "; default: from the file extension")}),
    ]
    options = _fields(task_cls.Options, 1)
    out += ["task_options:", *options] if options else ["task_options: {}".ljust(COMMENT_COLUMN - 1)
                                                       + " # this task takes no options"]
    out += ["train:", *_fields(TrainSpec, 1, notes={
        "loggers": "any of: " + ", ".join(regs.loggers.names()),
        "metric": f"validation metric that picks best/; default: {_default_metric(task_cls)}"})]
    out.append(_line(0, "output", "null", "run folder; default: runs/<spec file name> beside the spec"))
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ plugins
NAME_RE = re.compile(r"^[a-z][a-z0-9]*([_-][a-z0-9]+)*$")


def plugin_names(name):
    """``{dist, module, task, entry, cls, requires}`` for a plugin called ``name``."""
    if not NAME_RE.match(name or ""):
        raise SpecError(f"new-plugin: {name!r} is not a valid name; use lower-case letters, digits, "
                        f"'-' or '_', starting with a letter (e.g. keyword-spotter)")
    base = name[len("taskbert-"):] if name.startswith("taskbert-") else name
    task = base.replace("-", "_")
    dist = f"taskbert-{base}"
    return {"dist": dist, "module": dist.replace("-", "_"), "task": task, "entry": task,
            "cls": "".join(part.capitalize() for part in task.split("_")) + "Task",
            "requires": requirement()}


def requirement():
    """What a new plugin asks of taskbert: this release line (``taskbert>=0.1,<0.2``), whose
    plugin API it was written against; a later line may change that API."""
    from .. import __version__

    major, minor = (int(p) for p in __version__.split(".")[:2])
    return f"taskbert>={major}.{minor},<{major}.{minor + 1}"


def new_plugin(name, dest=".", force=False):
    """Write a plugin package into ``dest/<dist>``; return its folder and the names."""
    names = plugin_names(name)
    from ..plugins.manager import registries

    if names["task"] in registries().tasks:   # installed, it would break every command
        raise SpecError(f"new-plugin: task {names['task']!r} is already registered by "
                        f"{registries().tasks.owner(names['task'])}; choose another name")
    root = os.path.join(dest, names["dist"])
    if os.path.exists(root) and os.listdir(root) and not force:
        raise SpecError(f"new-plugin: {root} exists and is not empty; choose another -o or pass --force")
    source = os.path.join(TEMPLATES, "plugin")
    written = []
    for folder, _, files in os.walk(source):
        for file in sorted(files):
            if not file.endswith(".tmpl"):
                continue
            rel = os.path.relpath(os.path.join(folder, file), source)[:-len(".tmpl")]
            parts = [names["module"] if p == "module" else p for p in rel.split(os.sep)]
            target = os.path.join(root, *parts)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(os.path.join(folder, file), encoding="utf-8") as fh:
                text = string.Template(fh.read()).substitute(names)
            with open(target, "w", encoding="utf-8") as fh:
                fh.write(text)
            written.append(target)
    return root, names, sorted(written)


@cli.command()
@click.option("--task", "task_name", required=True, help="a registered task (see: taskbert tasks)")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="write here (default: stdout)")
@click.option("--force", is_flag=True, help="replace an existing file")
@friendly
def init(task_name, output, force):
    """Write a commented starter spec for a task, every option with its default."""
    from ..errors import SpecError
    from ..io import atomic_write

    text = init_spec(task_name)
    if not output:
        click.echo(text, nl=False)
        return
    if os.path.exists(output) and not force:
        raise SpecError(f"{output}: exists; pass --force to replace it")
    atomic_write(output, text)
    click.echo(f"wrote {output}; next: taskbert validate {output}", err=True)


@cli.command("new-plugin")
@click.argument("name")
@click.option("-o", "--output", default=".", show_default=True, type=click.Path(file_okay=False),
              help="folder to create the package in")
@click.option("--force", is_flag=True, help="write into an existing, non-empty folder")
@friendly
def new_plugin_cmd(name, output, force):
    """Write a plugin package NAME: pyproject with the entry point, a task module, a README
    and a passing test."""

    root, names, files = new_plugin(name, output, force)
    for path in files:
        click.echo(path)
    click.echo(f"next: pip install -e '{root}[test]' && taskbert tasks && "
               f"(cd {root} && python -m pytest -q)", err=True)
