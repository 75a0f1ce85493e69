"""The "Writing a plugin" walk-through of docs/plugins.md, run as written: docs cannot drift
from code.

The module under ``# my_tasks/__init__.py`` in docs/plugins.md is executed, registered the way an
installed entry point is, trained on the tiny encoder, and used for ``taskbert predict`` on
unlabelled texts (a walk-through whose ``encode`` only handled labelled examples once broke
there)."""

import json
import os
import re
import types

from taskbert.plugins import manager as plugin_mod
from taskbert.cli.runs import load_run, predict_examples, read_inputs
from taskbert.testing import check_task_class, run_spec
from test_plugins import _with_entry_points  # a fake `taskbert` entry point, other groups real

PLUGIN_DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "docs", "plugins.md")


def _readme_plugin_module():
    text = open(PLUGIN_DOCS, encoding="utf-8").read()
    block = re.search(r"```python\n# my_tasks/__init__.py\n(.*?)```", text, re.S)
    assert block, "docs/plugins.md lost its plugin walk-through"
    module = types.ModuleType("my_tasks")
    exec(compile(block.group(1), "docs/plugins.md:my_tasks", "exec"), module.__dict__)
    return module


def test_readme_plugin_trains_predicts_and_writes_gold(monkeypatch, tmp_path, tiny_encoder, sentiment_data):
    module = _readme_plugin_module()
    check_task_class(module.MeanPool)
    _with_entry_points(monkeypatch, my_tasks=module)   # as if pip-installed
    try:
        train, dev = sentiment_data
        spec = {"task": "mean_pool_classification", "encoder": {"model": tiny_encoder, "max_length": 32},
                "data": {"train": train, "validation": dev},
                "train": {"epochs": 3, "batch_size": 16, "lr": 2e-3, "loggers": []},
                "output": str(tmp_path / "run")}
        metrics, run_dir = run_spec(spec, str(tmp_path))
        assert metrics["validation/accuracy"] > 0.8  # chance is 0.5
        lines = [json.loads(line) for line in open(os.path.join(run_dir, "predictions.jsonl"))]
        assert lines and all(line["gold"] in ("pos", "neg") for line in lines)
        texts = tmp_path / "texts.txt"
        texts.write_text("the film was great and superb\nthe film was awful and terrible\n")
        loaded = load_run(run_dir)
        predictions = predict_examples(loaded, read_inputs(str(texts), loaded.task))
        assert [p["label"] for p in predictions] == ["pos", "neg"]
    finally:
        plugin_mod.reset()
