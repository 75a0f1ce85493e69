"""The YAML spec: parsed with ``yaml.safe_load`` into typed, frozen dataclasses.

``load_spec(path, overrides)`` reads, applies ``--set key=value`` overrides, checks every
key and value, resolves relative paths against the spec's folder and validates the task's
``task_options`` against the task's ``Options`` dataclass. Nothing heavy is imported here:
a bad spec fails before any model weights load.
"""

import copy
import dataclasses
import os
from dataclasses import dataclass, field
from typing import Literal, Optional, Union

import yaml

from ..errors import SpecError, TaskbertError
from ..data.sources import resolve_sources
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
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    threads: Optional[int] = field(default=None, metadata={"min": 1})
    loggers: tuple[str, ...] = ("console",)


@dataclass(frozen=True)
class Spec:
    """A whole, validated spec. ``options`` is the task's ``Options`` instance."""

    task: str
    encoder: EncoderSpec = field(default_factory=EncoderSpec)
    data: DataSpec = field(default_factory=DataSpec)
    task_options: dict = field(default_factory=dict)
    train: TrainSpec = field(default_factory=TrainSpec)
    output: Optional[str] = field(default=None, metadata={"path": True})
    # set by load_spec, never read from YAML
    path: Optional[str] = field(default=None, compare=False, metadata={"internal": True})
    options: object = field(default=None, compare=False, metadata={"internal": True})

    def to_dict(self):
        """The resolved spec as plain data (what ``spec.yaml`` in the run folder holds)."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name in ("path", "options"):
                continue
            out[f.name] = _plain(getattr(self, f.name))
        if self.options is not None and dataclasses.is_dataclass(self.options):
            out["task_options"] = _plain(self.options)
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
    except yaml.YAMLError:
        value = text
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


def read_yaml(path):
    """Read a YAML mapping with ``yaml.safe_load``; one-line errors with the line number."""
    if not os.path.exists(path):
        raise SpecError(f"{path}: spec file not found")
    if os.path.isdir(path):
        raise SpecError(f"{path}: is a folder, expected a YAML spec file")
    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh)
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text (byte {exc.start}); save the spec as UTF-8") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{path}: {where}malformed YAML: {problem}") from exc
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
