"""Each built-in task's page names the options ``predict --task-option`` may change, as the
code marks them (``metadata={"predict": True}``)."""

import os
import re

import pytest

from taskbert import registries
from taskbert.config.schema import predict_options

DOCS = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "tasks")


@pytest.mark.parametrize("task", ["sentence_classification", "sentence_pair", "token_classification",
                                  "extractive_qa", "pretraining"])
def test_task_pages_list_the_options_predict_may_change(task):
    with open(os.path.join(DOCS, f"{task}.md"), encoding="utf-8") as fh:
        text = fh.read()
    found = re.search(r"`taskbert predict` and `serve` may change (.*?) with `--task-option", text)
    assert found, f"docs/tasks/{task}.md does not say which options predict may change"
    assert re.findall(r"`(\w+)`", found.group(1)) == predict_options(registries().tasks.get(task).Options)
