"""Every hook in hookspecs.py is documented in the README with its exact signature."""

import inspect
import os

from taskbert import hookspecs

README = os.path.join(os.path.dirname(__file__), os.pardir, "README.md")


def test_every_hook_documented_with_signature():
    text = open(README, encoding="utf-8").read()
    hooks = [name for name, fn in vars(hookspecs).items()
             if name.startswith("taskbert_") and callable(fn)]
    assert len(hooks) >= 8
    for name in hooks:
        signature = f"{name}{inspect.signature(getattr(hookspecs, name))}"
        assert signature in text, f"README lacks the hook signature `{signature}`"
