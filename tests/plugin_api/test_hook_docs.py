"""Every hook in hookspecs.py is documented in docs/plugins.md with its exact signature."""

import inspect
import os

from taskbert.plugins import hookspecs

PLUGIN_DOCS = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "docs", "plugins.md")


def test_every_hook_documented_with_signature():
    text = open(PLUGIN_DOCS, encoding="utf-8").read()
    hooks = [name for name, fn in vars(hookspecs).items()
             if name.startswith("taskbert_") and callable(fn)]
    assert len(hooks) >= 8
    for name in hooks:
        signature = f"{name}{inspect.signature(getattr(hookspecs, name))}"
        assert signature in text, f"docs/plugins.md lacks the hook signature `{signature}`"
