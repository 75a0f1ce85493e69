"""The plugin system: registries, built-ins as plugins, env vars, a third-party package."""

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from taskbert import plugins as plugin_mod
from taskbert.cli import cli
from taskbert.errors import TaskbertError, UnknownNameError
from taskbert.registry import Registry

SAMPLE = os.path.join(os.path.dirname(__file__), "sample_plugin")


def test_registry_refuses_duplicates_and_lists_known_names():
    reg = Registry("task")
    reg.register("alpha", 1, owner="a")
    with pytest.raises(TaskbertError, match="duplicate task 'alpha'.*by a and again by b"):
        reg.register("alpha", 2, owner="b")
    reg.register("beta", 2)
    with pytest.raises(UnknownNameError) as info:
        reg.get("alpah")
    assert "did you mean 'alpha'" in str(info.value) and "known: alpha, beta" in str(info.value)


def test_builtins_are_plugins_and_disable_env(monkeypatch):
    plugin_mod.reset()
    assert "sentence_classification" in plugin_mod.registries().tasks
    monkeypatch.setenv("TASKBERT_DISABLE_PLUGINS", "taskbert_plugins.classification")
    plugin_mod.reset()
    try:
        assert "sentence_classification" not in plugin_mod.registries().tasks
    finally:
        monkeypatch.delenv("TASKBERT_DISABLE_PLUGINS")
        plugin_mod.reset()


def test_misspelt_hook_is_an_error(monkeypatch):
    import pluggy

    from taskbert import hookspecs

    pm = pluggy.PluginManager("taskbert")
    pm.add_hookspecs(hookspecs)

    class Bad:
        @hookspecs.hookimpl
        def taskbert_register_taks(self, register):
            pass

    pm.register(Bad())
    with pytest.raises(pluggy.PluginValidationError):
        pm.check_pending()


@pytest.fixture(scope="module")
def installed_sample():
    """pip-install the sample plugin package (found through its entry point)."""
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    SAMPLE], check=True)
    plugin_mod.reset()
    yield
    subprocess.run([sys.executable, "-m", "pip", "uninstall", "-q", "-y", "taskbert-sample"], check=True)
    plugin_mod.reset()


def test_sample_plugin_is_listed_and_runs(installed_sample, tiny_encoder, sentiment_data, tmp_path, monkeypatch):
    result = CliRunner().invoke(cli, ["tasks"])
    assert result.exit_code == 0
    assert "mean_pool_classification" in result.output and "[sample]" in result.output
    assert "sentence_classification" in result.output
    result = CliRunner().invoke(cli, ["plugins"])
    assert "sample  (taskbert-sample 0.1.0)" in result.output
    from taskbert.testing import run_spec

    train, dev = sentiment_data
    spec = {"task": "mean_pool_classification", "encoder": {"model": tiny_encoder, "max_length": 32},
            "data": {"train": train, "validation": dev},
            "train": {"epochs": 3, "batch_size": 16, "lr": 2e-3, "loggers": []},
            "output": str(tmp_path / "run")}
    metrics, _ = run_spec(spec, str(tmp_path))
    assert metrics["validation/accuracy"] > 0.8
    # TASKBERT_LOAD_PLUGINS with another name keeps the sample out
    monkeypatch.setenv("TASKBERT_LOAD_PLUGINS", "nothing-else")
    plugin_mod.reset()
    assert "mean_pool_classification" not in plugin_mod.registries().tasks
    monkeypatch.delenv("TASKBERT_LOAD_PLUGINS")
    plugin_mod.reset()
