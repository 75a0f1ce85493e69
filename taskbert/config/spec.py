"""The YAML spec: parsed with ``yaml.safe_load`` into typed, frozen dataclasses.

``load_spec(path, overrides)`` reads, applies ``--set key=value`` overrides, checks every
key and value, resolves relative paths against the spec's folder and validates the task's
``task_options`` against the task's ``Options`` dataclass. Nothing heavy is imported here:
a bad spec fails before any model weights load.
"""

import copy
import dataclasses
import errno
import os
import re
import stat
from dataclasses import dataclass, field
from typing import Literal, Optional, Union

import yaml

from ..data.sources import resolve_sources
from ..errors import SpecError, TaskbertError
from .schema import build


@dataclass(frozen=True)
class EncoderSpec:
    """``encoder:`` — which pretrained encoder to start from."""

    model: str = field(default="minilm-l6", metadata={
        "help": "Hugging Face id, local folder, or packaged alias (minilm-l6)"})
    max_length: int = field(default=128, metadata={"min": 8, "help": "tokens per input window"})
    tokenizer: Optional[str] = field(default=None, metadata={
        "help": "tokenizer id or folder when it differs from the model"})
    revision: Optional[str] = None
    trust_remote_code: bool = field(default=False, metadata={
        "help": "run code shipped with a hub model; off unless you trust it"})
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2"] = field(default="auto", metadata={
        "help": "attention kernel: auto (flash_attention_2 on CUDA with the flash-attn package in bf16/fp16, "
                "else sdpa where the architecture has it, else eager), sdpa, eager, or flash_attention_2"})


@dataclass(frozen=True)
class SplitLimits:
    """``data.limit:`` — keep only the first N examples of a split (for quick runs)."""

    train: Optional[int] = field(default=None, metadata={"min": 1})
    validation: Optional[int] = field(default=None, metadata={"min": 1})
    test: Optional[int] = field(default=None, metadata={"min": 1})


@dataclass(frozen=True)
class DataSpec:
    """``data:`` — where the examples are and how to read them."""

    # a path (file, or a folder such as a ``save_to_disk`` dataset) or a hub dataset mapping
    # ``{hub: NAME, config:, split:, revision:}`` (taskbert.data.sources.HubSource)
    train: Optional[Union[str, dict]] = field(default=None, metadata={"path": True})
    validation: Optional[Union[str, dict]] = field(default=None, metadata={"path": True})
    test: Optional[Union[str, dict]] = field(default=None, metadata={"path": True})
    format: Optional[str] = field(default=None, metadata={
        "help": "reader name; guessed from the file extension when left out"})
    reader_options: dict = field(default_factory=dict)
    limit: SplitLimits = field(default_factory=SplitLimits)

    def splits(self):
        """``{split: source}`` for the splits that are set (a path or a HubSource)."""
        return {s: p for s in ("train", "validation", "test") if (p := getattr(self, s))}


@dataclass(frozen=True)
class TrainSpec:
    """``train:`` — the optimisation and evaluation schedule."""

    epochs: float = field(default=3.0, metadata={"gt": 0, "max": 1e6})
    max_steps: Optional[int] = field(default=None, metadata={"min": 1,
        "help": "stop after this many optimizer steps (overrides epochs)"})
    batch_size: int = field(default=32, metadata={"min": 1})
    eval_batch_size: Optional[int] = field(default=None, metadata={"min": 1})
    grad_accum: int = field(default=1, metadata={"min": 1})
    lr: float = field(default=5e-5, metadata={"gt": 0})
    weight_decay: float = field(default=0.01, metadata={"min": 0})
    warmup: float = field(default=0.1, metadata={"min": 0,
        "help": "fraction of steps if < 1, else a number of steps"})
    max_grad_norm: Optional[float] = field(default=1.0, metadata={"gt": 0})
    seed: int = field(default=13, metadata={"min": 0, "max": 2**32 - 1})   # NumPy's seed range
    eval_every: Union[int, Literal["epoch"]] = field(default="epoch", metadata={"min": 1})
    log_every: int = field(default=50, metadata={"min": 1})
    save_every: Optional[int] = field(default=None, metadata={"min": 1,
        "help": "write a resumable checkpoint every N steps (and after each evaluation)"})
    early_stopping: Optional[int] = field(default=None, metadata={"min": 1,
        "help": "stop after N evaluations without improvement"})
    metric: Optional[str] = field(default=None, metadata={
        "help": "validation metric that picks the best model; the task's default if unset"})
    mixing: Literal["proportional", "temperature", "round_robin"] = field(default="proportional", metadata={
        "help": "with tasks: how each batch's task is drawn (docs/multitask.md)"})
    mixing_temperature: float = field(default=2.0, metadata={"gt": 0,
        "help": "mixing: temperature draws a task with odds batches ** (1 / T)"})
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    compile: bool = field(default=False, metadata={
        "help": "train under torch.compile (off by default; not yet measured on a GPU)"})
    threads: Optional[int] = field(default=None, metadata={"min": 1})
    loggers: tuple[str, ...] = ("console",)


@dataclass(frozen=True)
class MemberSpec:
    """One entry of ``tasks:`` (a multi-task spec): a task with its own data and options."""

    task: str
    data: DataSpec = field(default_factory=DataSpec)
    task_options: dict = field(default_factory=dict)
    weight: float = field(default=1.0, metadata={"gt": 0, "help": "this task's loss is multiplied by it"})
    options: object = field(default=None, compare=False, metadata={"internal": True})


@dataclass(frozen=True)
class Spec:
    """A whole, validated spec. ``options`` is the task's ``Options`` instance. A multi-task
    spec has ``tasks`` (``{name: MemberSpec}``) instead of ``task``/``data``/``task_options``;
    :meth:`members` gives every spec one view per task."""

    task: Optional[str] = None
    tasks: Optional[dict] = field(default=None, metadata={
        "help": "several named tasks sharing the encoder: {name: {task, data, task_options, weight}}"})
    encoder: EncoderSpec = field(default_factory=EncoderSpec)
    data: DataSpec = field(default_factory=DataSpec)
    task_options: dict = field(default_factory=dict)
    train: TrainSpec = field(default_factory=TrainSpec)
    output: Optional[str] = field(default=None, metadata={"path": True})
    # set by load_spec, never read from YAML
    path: Optional[str] = field(default=None, compare=False, metadata={"internal": True})
    options: object = field(default=None, compare=False, metadata={"internal": True})

    def members(self):
        """``[(name, spec)]``: one single-task view of this spec per task, sharing ``encoder``,
        ``train`` and ``output``; ``[(None, self)]`` for a single-task spec."""
        if not self.tasks:
            return [(None, self)]
        return [(name, dataclasses.replace(self, task=m.task, tasks=None, data=m.data,
                                           task_options=m.task_options, options=m.options))
                for name, m in self.tasks.items()]

    def data_files(self):
        """``{key: path}`` of every data file: ``split`` (``name/split`` in a multi-task spec)."""
        return {(f"{name}/{split}" if name else split): path
                for name, member in self.members() for split, path in member.data.splits().items()}

    def to_dict(self):
        """The resolved spec as plain data (what ``spec.yaml`` in the run folder holds)."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name in ("path", "options") or (f.name in ("task", "tasks") and getattr(self, f.name) is None):
                continue
            out[f.name] = _plain(getattr(self, f.name))
        if self.options is not None and dataclasses.is_dataclass(self.options):
            out["task_options"] = _plain(self.options)
        if self.tasks:
            out.pop("data", None), out.pop("task_options", None)
            out["tasks"] = {name: {"task": m.task, "data": _plain(m.data), "weight": m.weight,
                                   "task_options": _plain(m.options) if m.options is not None else m.task_options}
                            for name, m in self.tasks.items()}
        return out


def _plain(value):
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def apply_override(raw, assignment, file="--set"):
    """Apply one ``key.sub=value`` override to the raw mapping (value read as YAML)."""
    if "=" not in assignment:
        raise SpecError(f"{file}: {assignment!r} is not key=value (e.g. train.lr=3e-5)")
    key, _, text = assignment.partition("=")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as exc:
        if text.strip().startswith(("[", "{")):   # meant as a list or mapping: say it is broken
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise SpecError(f"{file}: {assignment!r}: the value is not valid YAML ({problem}); "
                            f"e.g. {key.strip()}=[a, b]") from None
        value = text   # a plain string that YAML cannot read (a: b), taken as it is
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise SpecError(f"{file}: {assignment!r} has an empty key")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise SpecError(f"{file}: {'.'.join(parts[:i + 1])} is not a mapping; cannot set {key}")
        node = child
    node[parts[-1]] = value


def _duplicate_key(node, seen=None):
    """``(key, first line, second line)`` of the first key given twice in one mapping of a
    composed YAML node tree, or None. PyYAML keeps the last one silently, so a second
    ``task:`` would quietly replace the first."""
    seen = set() if seen is None else seen
    if node is None or id(node) in seen:   # an empty file; an alias met again (anchors may even nest in themselves)
        return None
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first = {}
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                line = first.setdefault((key.tag, key.value), key.start_mark.line + 1)
                if line != key.start_mark.line + 1:
                    return key.value, line, key.start_mark.line + 1
    children = node.value if isinstance(node.value, list) else []
    for child in children:
        for sub in (child if isinstance(child, tuple) else (child,)):
            found = _duplicate_key(sub, seen)
            if found:
                return found
    return None


def read_yaml(path):
    """Read a YAML mapping with ``yaml.safe_load`` (and no key twice in one mapping); one-line
    errors with the line number."""
    try:
        info = os.stat(path)
    except (OSError, ValueError) as exc:   # ELOOP: os.path.exists calls a loop "not found"
        loop = getattr(exc, "errno", None) == errno.ELOOP
        raise SpecError(f"{path}: {'is a symlink loop' if loop else 'spec file not found'}") from None
    if stat.S_ISDIR(info.st_mode):
        raise SpecError(f"{path}: is a folder, expected a YAML spec file")
    if not stat.S_ISREG(info.st_mode):   # a FIFO would block the read
        raise SpecError(f"{path}: is not a regular file (a pipe, socket or device), expected a YAML spec file")
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        raw = yaml.safe_load(text)
        duplicate = _duplicate_key(yaml.compose(text, Loader=yaml.SafeLoader))
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text (byte {exc.start}); save the spec as UTF-8") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{path}: {where}malformed YAML: {problem}") from exc
    if duplicate:
        key, first, second = duplicate
        raise SpecError(f"{path}: line {second}: key {key!r} appears twice (lines {first} and {second}); "
                        f"keep one")
    if raw is None:
        raise SpecError(f"{path}: the spec is empty; it needs at least 'task:'")
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: the top level must be a mapping of keys, got {type(raw).__name__}")
    return raw


def load_spec(path, overrides=(), registries=None):
    """Read, override, check and resolve a spec file; return a frozen :class:`Spec`."""
    raw = read_yaml(path)
    plain = copy.deepcopy(raw) if overrides else None   # to tell the file's errors from --set's
    for assignment in overrides:
        apply_override(raw, assignment)
    try:
        return spec_from_dict(raw, path, registries)
    except SpecError as exc:
        if not overrides:
            raise
        try:   # the file alone passes: the bad value came from --set, so say that
            spec_from_dict(plain, path, registries)
        except TaskbertError:
            raise exc from None
        message = str(exc)
        message = message[len(path) + 2:] if message.startswith(f"{path}: ") else message
        given = " ".join(f"--set {a}" for a in overrides)
        raise SpecError(f"{path} with {given}: {message}") from exc


#: keys that left the spec: (section, key) -> (the old default, where the setting went). The
#: old default is dropped quietly (an older run's resolved spec.yaml still loads for --resume
#: and predict); any other value is refused with where the setting lives now.
RETIRED = {("train", "dropout_masks"): (
    "auto", "moved to the CPU speed plugin: set the environment variable TASKBERT_DROPOUT_MASKS "
            "(auto, hash or torch) instead")}


def _drop_retired(raw, path):
    for (section, key), (default, moved) in RETIRED.items():
        block = raw.get(section) if isinstance(raw, dict) else None
        if isinstance(block, dict) and key in block:
            if block[key] != default:
                raise SpecError(f"{path}: {section}.{key}: {moved}")
            raw = {**raw, section: {k: v for k, v in block.items() if k != key}}
    return raw


def spec_from_dict(raw, path="<spec>", registries=None):
    """Check a raw mapping as a spec; relative paths resolve against ``path``'s folder."""
    raw = _drop_retired(raw, path)
    base = os.path.dirname(os.path.abspath(path)) if path and not path.startswith("<") else os.getcwd()
    ctx = {"file": path, "base": base}
    spec = build(Spec, raw, "", ctx)
    spec = dataclasses.replace(spec, data=resolve_sources(spec.data, ctx))   # hub mappings
    if spec.output is None:
        stem = os.path.splitext(os.path.basename(path))[0] if not path.startswith("<") else "run"
        spec = dataclasses.replace(spec, output=os.path.join(base, "runs", stem))
    if registries is None:
        from ..plugins.manager import registries as _registries

        registries = _registries()
    if spec.tasks is not None:
        spec = _members_from_dict(spec, raw, ctx, registries)
        options = None
    else:
        if spec.task is None:
            raise SpecError(f"{path}: missing required key 'task' (or 'tasks' for several tasks)")
        if (spec.train.mixing, spec.train.mixing_temperature) != ("proportional", 2.0):   # the defaults
            raise SpecError(f"{path}: train.mixing: only for a spec with several tasks (tasks:)")
        task_cls = registries.tasks.get(spec.task, where=f"{path}: task")
        options = build(task_cls.Options, spec.task_options, "task_options", ctx)
        if spec.data.format is not None:
            registries.readers.get(spec.data.format, where=f"{path}: data.format")
    loggers = getattr(registries, "loggers", None)
    for i, name in enumerate(spec.train.loggers if loggers is not None else ()):
        where = f"{path}: train.loggers[{i}]"
        check = getattr(loggers.get(name, where=where), "check", None)
        if check is not None:  # e.g. an optional dependency the logger needs
            check(where)
    return dataclasses.replace(spec, path=os.path.abspath(path) if not path.startswith("<") else path,
                               options=options)


def _members_from_dict(spec, raw, ctx, registries):
    """``spec`` with its ``tasks:`` mapping built into :class:`MemberSpec` entries, each
    task's options checked (errors name ``tasks.NAME.key``)."""
    path = ctx["file"]
    for key in ("task", "data", "task_options"):
        if key in raw:
            raise SpecError(f"{path}: {key}: a spec with tasks: gives each task its own task, data "
                            f"and task_options (tasks.NAME.{key}); remove the top-level {key!r}")
    if not isinstance(spec.tasks, dict) or len(spec.tasks) < 2:
        raise SpecError(f"{path}: tasks: expected a mapping of at least two named tasks "
                        f"({{name: {{task, data, task_options}}}}), got {spec.tasks!r}")
    members = {}
    for name, entry in spec.tasks.items():
        if not isinstance(name, str) or not MEMBER_NAME.fullmatch(name):
            raise SpecError(f"{path}: tasks: {name!r} is not a task name; use letters, digits, "
                            f"'_' or '-', starting with a letter")
        member = build(MemberSpec, entry, f"tasks.{name}", ctx)
        member = dataclasses.replace(member, data=resolve_sources(member.data, ctx, f"tasks.{name}.data"))
        task_cls = registries.tasks.get(member.task, where=f"{path}: tasks.{name}.task")
        options = build(task_cls.Options, member.task_options, f"tasks.{name}.task_options", ctx)
        if member.data.format is not None:
            registries.readers.get(member.data.format, where=f"{path}: tasks.{name}.data.format")
        members[name] = dataclasses.replace(member, options=options)
    return dataclasses.replace(spec, tasks=members)


MEMBER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
