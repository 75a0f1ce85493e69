"""taskbert's built-in plugins: tasks, readers, metrics and loggers.

Installed as the package ``taskbert_plugins`` and listed in
``taskbert.plugins.DEFAULT_PLUGINS``; they use only the public hooks, like any
third-party plugin.
"""
