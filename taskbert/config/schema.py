"""Turn plain dicts (from YAML) into frozen dataclasses, with one-line errors.

Used for the spec sections and for every task's ``Options``, so third-party tasks get
the same checks as the built-ins: unknown keys (with a did-you-mean), wrong types,
values outside a ``Literal``, and per-field checks given in ``field(metadata=...)``:

* ``metadata={"path": True}``: a relative path is resolved against the spec's folder;
* ``metadata={"min": 0, "max": 1}`` / ``{"gt": 0}``: numeric bounds;
* ``metadata={"choices": ("a", "b")}``: the allowed values (a ``Literal`` type says the same
  and shows them in ``taskbert init``);
* ``metadata={"help": "..."}``: one-line description shown by ``taskbert init``;
* ``metadata={"internal": True}``: not a spec key (set by the task itself).

Any other metadata key is refused when the plugin registers its task (a misspelt ``"mni"``
would otherwise check nothing): :func:`check_metadata`.
"""

import dataclasses
import difflib
import os
import types
import typing

from ..errors import SpecError

_PLURAL = {int: "integers", float: "numbers", str: "strings", bool: "booleans (true or false)"}


def _items_name(tp):
    """``tp`` as the items of a list: 'strings', 'strings or integers', else None."""
    args = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, types.UnionType) else (tp,)
    args = [a for a in args if a is not type(None)]
    if all(a in _PLURAL for a in args):
        return ", ".join(_PLURAL[a] for a in args[:-1]) + (" or " if len(args) > 1 else "") + _PLURAL[args[-1]]
    return None


def _type_name(tp):
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(tp) or (object,)
        items = _items_name(inner)
        return f"a list of {items}" if items else f"a list (each item {_type_name(inner)})"
    if origin is dict or tp is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _convert(value, tp, where, ctx):
    """Return ``value`` checked (and converted) against type ``tp`` or raise SpecError."""
    origin = typing.get_origin(tp)
    if tp is typing.Any or tp is object:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where, ctx)
            except SpecError:
                continue
        raise SpecError(f"{ctx['file']}: {where}: expected {_type_name(tp)}, got {value!r}")
    if origin is typing.Literal:
        if value in typing.get_args(tp):
            return value
        raise SpecError(f"{ctx['file']}: {where}: {value!r} is not allowed; use {_type_name(tp)}")
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where, ctx)
    if origin in (list, tuple):
        if isinstance(value, str) and "," in value:   # 'a,b' from --set: one string, not two items
            items = ", ".join(p.strip() for p in value.split(","))
            raise SpecError(f"{ctx['file']}: {where}: {value!r} is one string; a list is written "
                            f"[{items}] (expected {_type_name(tp)})")
        if not isinstance(value, list):
            value = [value] if isinstance(value, (str, int, float)) else value
        if not isinstance(value, list):
            raise SpecError(f"{ctx['file']}: {where}: expected {_type_name(tp)}, got {value!r}")
        (inner, *_) = typing.get_args(tp) or (typing.Any,)
        return tuple(_convert(v, inner, f"{where}[{i}]", ctx) for i, v in enumerate(value))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise SpecError(f"{ctx['file']}: {where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "5e-5" as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        if isinstance(value, tp):
            return value
    raise SpecError(f"{ctx['file']}: {where}: expected {_type_name(tp)}, got {value!r}")


METADATA_KEYS = ("help", "min", "max", "gt", "choices", "path", "internal", "predict")


def predict_options(cls):
    """The fields of an ``Options`` dataclass marked ``metadata={"predict": True}``: those
    ``predict`` and ``serve`` may change (``--task-option``), as they do not shape the model."""
    return [f.name for f in dataclasses.fields(cls) if f.metadata.get("predict")]


def check_metadata(cls):
    """``None``, or one line naming the first ``field(metadata=...)`` key of dataclass ``cls``
    that this module does not act on, or a ``choices`` that is not a list of values."""
    for f in dataclasses.fields(cls):
        unknown = [k for k in f.metadata if k not in METADATA_KEYS]
        if unknown:
            close = difflib.get_close_matches(str(unknown[0]), METADATA_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            return (f"{cls.__qualname__}.{f.name}: metadata key {unknown[0]!r} does nothing{hint}; "
                    f"known: {', '.join(METADATA_KEYS)}")
        choices = f.metadata.get("choices")
        if choices is not None and (isinstance(choices, (str, bytes, dict)) or not hasattr(choices, "__iter__")):
            return f"{cls.__qualname__}.{f.name}: metadata 'choices' must be a list or tuple of values, got {choices!r}"
    return None


def _check_choices(value, meta, where, ctx):
    choices = meta.get("choices")
    if choices is not None and value not in list(choices):
        raise SpecError(f"{ctx['file']}: {where}: {value!r} is not allowed; choose one of: "
                        f"{', '.join(repr(c) for c in choices)}")


def _check_bounds(value, meta, where, ctx):
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    for key, ok, word in (
        ("min", lambda v, b: v >= b, ">="),
        ("max", lambda v, b: v <= b, "<="),
        ("gt", lambda v, b: v > b, ">"),
    ):
        if key in meta and not ok(value, meta[key]):
            raise SpecError(f"{ctx['file']}: {where}: {value!r} is out of range; must be {word} {meta[key]}")


def build(cls, data, where, ctx):
    """Build dataclass ``cls`` from mapping ``data``; ``where`` is the key path for errors.

    ``ctx`` holds ``file`` (for messages) and ``base`` (folder for relative paths).
    """
    if data is None:
        data = {}
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and not f.metadata.get("internal")}
    if not isinstance(data, dict):
        first = next(iter(fields), None)   # data.limit: 10 -> e.g. {train: 10}
        example = f" (e.g. {where}: {{{first}: {data!r}}}, keys: {', '.join(fields)})" \
            if where and first and isinstance(data, (int, float, str)) else ""
        raise SpecError(f"{ctx['file']}: {where or 'top level'}: expected a mapping, got {data!r}{example}")
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            allowed = ", ".join(fields)
            name = f"{where}.{key}" if where else str(key)
            raise SpecError(f"{ctx['file']}: unknown key {name!r}{hint}; allowed: {allowed}")
    kwargs = {}
    for name, f in fields.items():
        path = f"{where}.{name}" if where else name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise SpecError(f"{ctx['file']}: missing required key {path!r}")
            continue
        value = _convert(data[name], hints[name], path, ctx)
        _check_bounds(value, f.metadata, path, ctx)
        _check_choices(value, f.metadata, path, ctx)
        if f.metadata.get("path") and isinstance(value, str) and ctx.get("base"):
            value = os.path.normpath(os.path.join(ctx["base"], os.path.expanduser(value)))
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        if isinstance(exc, SpecError):
            raise
        raise SpecError(f"{ctx['file']}: {where or 'spec'}: {exc}") from exc


def describe(cls):
    """``[(name, type name, default, help)]`` for every field, for ``taskbert init``."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        out.append((f.name, _type_name(hints[f.name]), default, f.metadata.get("help", "")))
    return out
