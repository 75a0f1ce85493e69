"""The plugin manager: built-in plugins, ``taskbert`` entry points, and the registries.

Built-ins are ordinary plugins listed in ``DEFAULT_PLUGINS``; third-party packages come
only through the ``taskbert`` entry-point group. Two environment variables choose plugins:

* ``TASKBERT_LOAD_PLUGINS=pkg_a,pkg_b`` loads only those entry points (empty: none);
* ``TASKBERT_DISABLE_PLUGINS=name,...`` blocks plugins by name (built-in module names
  such as ``taskbert_plugins.pairs`` or entry-point names).

``TASKBERT_TRACE_PLUGINS=1`` writes a line to stderr for every hook call: the hook, its
argument names and the plugins it calls, in call order; and a line when a hook raised.
"""

import dataclasses
import difflib
import importlib
import os
import sys
from importlib import metadata

import pluggy

from ..errors import TaskbertError
from ..config.schema import check_metadata
from . import hookspecs
from .registry import Registry

DEFAULT_PLUGINS = (
    "taskbert.encoder",
    "taskbert_plugins.readers",
    "taskbert_plugins.hf_datasets",   # hub, save_to_disk, Arrow, Parquet (needs taskbert[datasets])
    "taskbert_plugins.metrics",
    "taskbert_plugins.loggers",
    "taskbert_plugins.classification",
    "taskbert_plugins.conll",
    "taskbert_plugins.tagging",
    "taskbert_plugins.pairs",
    "taskbert_plugins.qa",
    "taskbert_plugins.features",
    "taskbert_plugins.pretraining",
    "taskbert_cpu",              # speed on a CPU; TASKBERT_DISABLE_PLUGINS=taskbert_cpu turns it off
    "taskbert_cuda",             # padding-free passes on a GPU; TASKBERT_DISABLE_PLUGINS=taskbert_cuda
)

ENTRY_POINT_GROUP = "taskbert"

_pm = None
_registries = None
_versions = {}  # entry-point name -> 'distribution version'


#: hooks of earlier versions -> what replaced them (for the one-line error)
REPLACED_HOOKS = {
    "taskbert_load_encoder": "taskbert_encoder_source, which returns a taskbert.EncoderSource",
    "taskbert_claims_encoder": "taskbert_encoder_source, which returns a taskbert.EncoderSource",
}


def _env_list(name):
    value = os.environ.get(name)
    if value is None:
        return None
    return [item.strip() for item in value.split(",") if item.strip()]


def _skip_hint(name):
    return f"; TASKBERT_DISABLE_PLUGINS={name} runs taskbert without it"


def _hook_names():
    return [n for n in dir(hookspecs) if n.startswith("taskbert_")]


def _unknown_hooks(pm):
    """``(plugin name, hook name)`` for every ``taskbert_*`` hookimpl with no hookspec."""
    known = set(_hook_names())
    out = []
    for name, plugin in pm.list_name_plugin():
        for attr in dir(plugin):
            if attr.startswith("taskbert_") and attr not in known \
                    and pm.parse_hookimpl_opts(plugin, attr) is not None:
                out.append((name, attr))
    return out


def _warn_unmatched(variable, names, known):
    """A name in TASKBERT_LOAD_PLUGINS / TASKBERT_DISABLE_PLUGINS that matches no plugin is
    almost always a typo; say so instead of silently loading or blocking nothing."""
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            print(f"warning: {variable}: no plugin is named {name!r}{hint}; known: "
                  f"{', '.join(sorted(known)) or 'none installed'}", file=sys.stderr)


def filter_note():
    """A clause for 'unknown task' errors when an environment variable filtered plugins."""
    notes = [f"{v}={os.environ[v]} is set" for v in ("TASKBERT_LOAD_PLUGINS", "TASKBERT_DISABLE_PLUGINS")
             if os.environ.get(v) is not None]
    return f" ({' and '.join(notes)})" if notes else ""


def _create_manager():
    pm = pluggy.PluginManager("taskbert")
    pm.add_hookspecs(hookspecs)
    disabled = set(_env_list("TASKBERT_DISABLE_PLUGINS") or [])
    entry_points = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    names = set(DEFAULT_PLUGINS) | {ep.name for ep in entry_points}
    _warn_unmatched("TASKBERT_DISABLE_PLUGINS", sorted(disabled), names)
    for module_name in DEFAULT_PLUGINS:
        if module_name in disabled:
            continue
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # a built-in not written yet in this install
                continue
            raise
        pm.register(module, name=module_name)
    only = _env_list("TASKBERT_LOAD_PLUGINS")
    _warn_unmatched("TASKBERT_LOAD_PLUGINS", only or [],
                    {ep.name for ep in entry_points} | {ep.dist.name for ep in entry_points if ep.dist})
    for ep in entry_points:
        if ep.name in disabled or pm.has_plugin(ep.name) or pm.is_blocked(ep.name):
            continue
        if only is not None and ep.name not in only and ep.dist.name not in only:
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken third-party install must not look like ours
            raise TaskbertError(
                f"plugin {ep.name!r} (entry point {ep.value}) failed to import: {exc}"
                + _skip_hint(ep.name)) from exc
        try:
            pm.register(plugin, name=ep.name)
        except (pluggy.PluginValidationError, ValueError) as exc:  # bad hookimpl arguments
            raise TaskbertError(f"plugin {ep.name!r} (entry point {ep.value}): "
                                f"{' '.join(str(exc).split())}" + _skip_hint(ep.name)) from exc
        _versions[ep.name] = f"{ep.dist.name} {ep.dist.version}"
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        unknown = _unknown_hooks(pm)
        if not unknown:
            raise TaskbertError(f"a plugin implements an unknown hook: {exc}") from exc
        name, attr = unknown[0]
        close = difflib.get_close_matches(attr, _hook_names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        if attr in REPLACED_HOOKS:
            hint = f" (it was replaced by {REPLACED_HOOKS[attr]}; see docs/plugins.md)"
        raise TaskbertError(f"plugin {name!r} implements an unknown hook {attr!r}{hint}"
                            + _skip_hint(name)) from exc
    if os.environ.get("TASKBERT_TRACE_PLUGINS", "") not in ("", "0"):
        _trace_calls(pm)
    return pm


def _trace_calls(pm):
    """One stderr line per hook call (``TASKBERT_TRACE_PLUGINS``): pluggy calls the
    implementations last-registered first, ``tryfirst``/``trylast`` aside."""
    def name_of(impl):
        return pm.get_name(impl.plugin) or impl.plugin_name

    def before(hook_name, impls, kwargs):
        order = ", ".join(name_of(i) for i in reversed(impls)) or "no plugin"
        print(f"taskbert trace: {hook_name}({', '.join(kwargs)}) -> {order}", file=sys.stderr)

    def after(outcome, hook_name, impls, kwargs):
        if outcome.exception is not None:
            print(f"taskbert trace: {hook_name} raised {type(outcome.exception).__name__}",
                  file=sys.stderr)

    pm.add_hookcall_monitoring(before, after)


def get_plugin_manager():
    """The process-wide plugin manager, created on first use."""
    global _pm
    if _pm is None:
        _pm = _create_manager()
    return _pm


def reset():
    """Forget the plugin manager and registries (tests change the environment)."""
    global _pm, _registries
    _pm = None
    _registries = None


def _task_name(cls, owner):
    """The registry key of a Task class a plugin registers, or one line saying what is wrong."""
    from ..task import Task

    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise TaskbertError(f"plugin {owner!r} registered {cls!r} as a task: register takes a "
                            f"taskbert.Task subclass" + _skip_hint(owner))
    if not isinstance(getattr(cls, "name", None), str) or not cls.name:
        raise TaskbertError(f"plugin {owner!r} registered task class {cls.__name__} without a "
                            f"name: set the class attribute name = '...'" + _skip_hint(owner))
    problem = check_metadata(cls.Options) if dataclasses.is_dataclass(cls.Options) else None
    if problem:
        raise TaskbertError(f"plugin {owner!r}, task {cls.name!r}: {problem}" + _skip_hint(owner))
    return cls.name


class Registries:
    """The tables filled by the registration hooks."""

    def __init__(self, pm):
        self.tasks = Registry("task")
        self.readers = Registry("reader")
        self.metrics = Registry("metric")
        self.loggers = Registry("logger")
        note = filter_note()
        for registry in (self.tasks, self.readers, self.metrics, self.loggers):
            registry.note = note
        # in registration order (built-ins first), so a duplicate blames the later plugin
        tables = {"taskbert_register_loggers": self.loggers, "taskbert_register_tasks": self.tasks,
                  "taskbert_register_readers": self.readers, "taskbert_register_metrics": self.metrics}
        trace = os.environ.get("TASKBERT_TRACE_PLUGINS", "") not in ("", "0")
        for hook_name, table in tables.items():
            for impl in getattr(pm.hook, hook_name).get_hookimpls():
                owner = impl.plugin_name
                if trace:   # called directly, so pluggy's monitor does not see these calls
                    print(f"taskbert trace: {hook_name}(register) -> {owner}", file=sys.stderr)
                if table is self.tasks:   # register(TaskClass): the key is the class's name
                    register = lambda cls, _o=owner: self.tasks.register(_task_name(cls, _o), cls, _o)  # noqa: E731
                else:                     # register(name, obj)
                    register = lambda name, obj, _t=table, _o=owner: _t.register(name, obj, _o)  # noqa: E731
                try:
                    impl.function(register=register)
                except TaskbertError as exc:
                    hint = "" if "TASKBERT_DISABLE_PLUGINS" in str(exc) else _skip_hint(owner)
                    raise type(exc)(f"{exc}{hint}") from None
                except Exception as exc:   # a plugin's own bug: one line, not a traceback on every command
                    raise TaskbertError(f"plugin {owner!r} failed in {hook_name}: {type(exc).__name__}: "
                                        f"{exc}" + _skip_hint(owner)) from exc


def registries():
    """The registries of the current plugin manager."""
    global _registries
    if _registries is None:
        _registries = Registries(get_plugin_manager())
    return _registries


def hook():
    """Shortcut for ``get_plugin_manager().hook``."""
    return get_plugin_manager().hook


def plugin_list():
    """Name, version and hooks of every registered plugin, for ``taskbert plugins``."""
    pm = get_plugin_manager()
    out = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        out.append({
            "name": name,
            "distribution": _versions.get(name, "taskbert (built-in)"),
            "builtin": name in DEFAULT_PLUGINS,
            "hooks": hooks,
        })
    return out
