"""The built-in plugins use only the public API a third party has: ``taskbert`` (the names in
``taskbert.__all__``) and ``taskbert.testing``; every public name exists and says what it is."""

import ast
import inspect
import os

import pytest

import taskbert

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(taskbert.__file__)))
PLUGIN_PACKAGES = ("taskbert_plugins", "taskbert_cpu", "taskbert_cuda")
PUBLIC_MODULES = {"taskbert", "taskbert.testing"}


def private_imports(source, filename="<source>"):
    """``(line, what)`` for every import of taskbert that is not its public API."""
    problems = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("taskbert.") and alias.name not in PUBLIC_MODULES:
                    problems.append((node.lineno, f"import {alias.name}"))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.startswith("taskbert.") and node.module not in PUBLIC_MODULES:
                problems.append((node.lineno, f"from {node.module} import ..."))
            elif node.module == "taskbert":
                for alias in node.names:
                    if alias.name not in taskbert.__all__:
                        problems.append((node.lineno, f"from taskbert import {alias.name} (not in __all__)"))
    return problems


def _plugin_sources():
    for package in PLUGIN_PACKAGES:
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for name in sorted(files):
                if name.endswith(".py"):
                    yield os.path.join(folder, name)


def test_built_in_plugins_import_only_the_public_api():
    sources = list(_plugin_sources())
    assert len(sources) > 25
    problems = []
    for path in sources:
        with open(path, encoding="utf-8") as fh:
            for line, what in private_imports(fh.read(), path):
                problems.append(f"{os.path.relpath(path, ROOT)}:{line}: {what}")
    assert not problems, "private imports:\n" + "\n".join(problems)


@pytest.mark.parametrize("source, found", [
    ("from taskbert.train.checkpoint import swap_in", "from taskbert.train.checkpoint import ..."),
    ("import taskbert.run", "import taskbert.run"),
    ("def f():\n    from taskbert import checkpoint", "from taskbert import checkpoint (not in __all__)"),
    ("from taskbert import Task, _secret", "from taskbert import _secret (not in __all__)"),
])
def test_the_check_sees_a_private_import(source, found):
    assert [what for _, what in private_imports(source)] == [found]


def test_the_check_passes_the_public_api():
    assert private_imports("from taskbert import Task, hookimpl\nfrom taskbert.testing import run_spec\n"
                           "from . import cache\nfrom .heads import Head\nimport torch") == []


def test_every_public_name_exists_and_has_a_docstring():
    for name in taskbert.__all__:
        value = getattr(taskbert, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert (value.__doc__ or "").strip(), f"taskbert.{name} has no docstring"
    assert "checkpoint" not in taskbert.__all__ and len(set(taskbert.__all__)) == len(taskbert.__all__)


def test_unknown_attributes_raise():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        taskbert.nope  # noqa: B018


def test_the_scaffolded_plugin_imports_only_the_public_api():
    """What `taskbert new-plugin` writes is what a plugin author copies: public names only."""
    import string

    from taskbert.cli.scaffold import plugin_names

    folder = os.path.join(ROOT, "taskbert", "cli", "templates", "plugin")
    names = plugin_names("demo-task")
    for base, _, files in os.walk(folder):
        for name in files:
            if name.endswith(".py.tmpl"):
                with open(os.path.join(base, name), encoding="utf-8") as fh:
                    source = string.Template(fh.read()).substitute(names)
                assert private_imports(source, name) == [], name
