"""Plugins: the hook specifications (:mod:`.hookspecs`, the call order in each docstring),
the pluggy manager that loads the built-in plugins and the ``taskbert`` entry points
(:mod:`.manager`) and the name registries it fills (:mod:`.registry`)."""

from .manager import (
                      DEFAULT_PLUGINS,
                      ENTRY_POINT_GROUP,
                      Registries,
                      get_plugin_manager,
                      hook,
                      plugin_list,
                      registries,
                      reset,
)

__all__ = ["DEFAULT_PLUGINS", "ENTRY_POINT_GROUP", "Registries", "get_plugin_manager", "hook",
           "plugin_list", "registries", "reset"]
