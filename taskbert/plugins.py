"""The plugin manager: built-in plugins, ``taskbert`` entry points, and the registries.

Built-ins are ordinary plugins listed in ``DEFAULT_PLUGINS``; third-party packages come
only through the ``taskbert`` entry-point group. Two environment variables choose plugins:

* ``TASKBERT_LOAD_PLUGINS=pkg_a,pkg_b`` loads only those entry points (empty: none);
* ``TASKBERT_DISABLE_PLUGINS=name,...`` blocks plugins by name (built-in module names
  such as ``taskbert_plugins.pairs`` or entry-point names).
"""

import importlib
import os
from importlib import metadata

import pluggy

from . import hookspecs
from .errors import TaskbertError
from .registry import Registry

DEFAULT_PLUGINS = (
    "taskbert.encoder",
    "taskbert_plugins.readers",
    "taskbert_plugins.metrics",
    "taskbert_plugins.loggers",
    "taskbert_plugins.classification",
    "taskbert_plugins.conll",
    "taskbert_plugins.tagging",
    "taskbert_plugins.pairs",
    "taskbert_plugins.qa",
    "taskbert_plugins.features",
    "taskbert_plugins.pretraining",
)

ENTRY_POINT_GROUP = "taskbert"

_pm = None
_registries = None
_versions = {}  # entry-point name -> 'distribution version'


def _env_list(name):
    value = os.environ.get(name)
    if value is None:
        return None
    return [item.strip() for item in value.split(",") if item.strip()]


def _create_manager():
    pm = pluggy.PluginManager("taskbert")
    pm.add_hookspecs(hookspecs)
    disabled = set(_env_list("TASKBERT_DISABLE_PLUGINS") or [])
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
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in disabled or pm.has_plugin(ep.name) or pm.is_blocked(ep.name):
            continue
        if only is not None and ep.name not in only and ep.dist.name not in only:
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken third-party install must not look like ours
            raise TaskbertError(
                f"plugin {ep.name!r} (entry point {ep.value}) failed to import: {exc}"
            ) from exc
        pm.register(plugin, name=ep.name)
        _versions[ep.name] = f"{ep.dist.name} {ep.dist.version}"
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise TaskbertError(f"a plugin implements an unknown hook: {exc}") from exc
    return pm


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


class Registries:
    """The tables filled by the registration hooks."""

    def __init__(self, pm):
        self.tasks = Registry("task")
        self.readers = Registry("reader")
        self.metrics = Registry("metric")
        self.loggers = Registry("logger")
        for impl in reversed(pm.hook.taskbert_register_loggers.get_hookimpls()):
            owner = impl.plugin_name
            impl.function(
                register=lambda name, cls, _o=owner: self.loggers.register(name, cls, _o)
            )
        for impl in reversed(pm.hook.taskbert_register_tasks.get_hookimpls()):
            owner = impl.plugin_name
            impl.function(register=lambda cls, _o=owner: self.tasks.register(cls.name, cls, _o))
        for impl in reversed(pm.hook.taskbert_register_readers.get_hookimpls()):
            owner = impl.plugin_name
            impl.function(
                register=lambda name, fn, _o=owner: self.readers.register(name, fn, _o)
            )
        for impl in reversed(pm.hook.taskbert_register_metrics.get_hookimpls()):
            owner = impl.plugin_name
            impl.function(
                register=lambda name, fn, _o=owner: self.metrics.register(name, fn, _o)
            )


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
