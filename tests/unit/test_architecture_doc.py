"""docs/architecture.md's tree names every module of the core, the built-in plugins and the
CPU plugin, so it cannot drift from the code unnoticed."""

import os
import re

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def _tree():
    with open(os.path.join(ROOT, "docs", "architecture.md"), encoding="utf-8") as fh:
        text = fh.read()
    return re.search(r"```\n(taskbert/.*?)```", text, re.S).group(1)


def test_the_tree_names_every_module_and_package():
    tree = _tree()
    names = set(re.findall(r"[A-Za-z_][\w.]*", tree))
    missing = []
    for package in ("taskbert", "taskbert_plugins", "taskbert_cpu", "taskbert_cuda"):
        for folder, dirs, files in os.walk(os.path.join(ROOT, package)):
            dirs[:] = [d for d in dirs if not d.startswith(("__", ".")) and d != "templates"]
            rel = os.path.relpath(folder, ROOT)
            if rel != package and os.path.basename(folder) + "/" not in tree:
                missing.append(rel + "/")
            for name in files:
                if name.endswith((".py", ".c")) and name not in ("__init__.py", "__main__.py") \
                        and name not in names and name[:-3] not in names:
                    missing.append(os.path.join(rel, name))
    assert not missing, f"docs/architecture.md's tree does not name: {', '.join(sorted(missing))}"
