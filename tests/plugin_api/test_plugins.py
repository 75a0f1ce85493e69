"""The plugin system: registries, built-ins as plugins, env vars, a third-party package."""

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from taskbert.plugins import manager as plugin_mod
from taskbert.cli import cli
from taskbert.errors import TaskbertError, UnknownNameError
from taskbert.plugins.registry import Registry

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

    from taskbert.plugins import hookspecs

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


def test_a_third_party_task_joins_a_built_in_one_in_several_tasks(installed_sample, tiny_encoder, sentiment_data,
                                                                    tmp_path):
    from taskbert.testing import run_spec

    train, dev = sentiment_data
    spec = {"encoder": {"model": tiny_encoder, "max_length": 32},
            "tasks": {"mean_pool": {"task": "mean_pool_classification", "data": {"train": train, "validation": dev}},
                      "cls": {"task": "sentence_classification", "data": {"train": train, "validation": dev}}},
            "train": {"epochs": 3, "batch_size": 16, "lr": 2e-3, "loggers": [], "mixing": "round_robin"},
            "output": str(tmp_path / "run")}
    metrics, run_dir = run_spec(spec, str(tmp_path))
    assert metrics["validation/mean_pool/accuracy"] > 0.8 and metrics["validation/cls/accuracy"] > 0.8
    with open(os.path.join(run_dir, "best", "mean_pool", "taskbert.json"), encoding="utf-8") as fh:
        assert json.load(fh)["task"] == "mean_pool_classification"


class _FakeDist:
    name, version = "fake-dist", "1.0"


class _FakeEntryPoint:
    """What ``importlib.metadata.entry_points`` yields, holding a plugin object in memory."""

    def __init__(self, name, plugin):
        self.name, self.value, self.dist, self._plugin = name, f"fake_{name}", _FakeDist(), plugin

    def load(self):
        return self._plugin


def _with_entry_points(monkeypatch, **plugins):
    eps = [_FakeEntryPoint(name, plugin) for name, plugin in plugins.items()]
    real = plugin_mod.metadata.entry_points   # importlib.metadata's own: other groups stay real
    monkeypatch.setattr(plugin_mod.metadata, "entry_points",
                        lambda **kw: eps if kw.get("group") == plugin_mod.ENTRY_POINT_GROUP else real(**kw))
    plugin_mod.reset()


def _hookimpl_plugin(hook_name, argnames, body=lambda **kw: None):
    """A plugin namespace with one hookimpl named ``hook_name`` taking ``argnames``."""
    from types import SimpleNamespace

    from taskbert import hookimpl

    namespace = {}
    exec(f"def {hook_name}({', '.join(argnames)}): return body({', '.join(f'{a}={a}' for a in argnames)})",
         {"body": body}, namespace)
    return SimpleNamespace(**{hook_name: hookimpl(namespace[hook_name])})


@pytest.mark.parametrize("hook_name, argnames, expected", [
    # a hookimpl argument the spec does not have: pluggy's multi-line error becomes one line
    ("taskbert_register_tasks", ["registry"], r"plugin 'bad' \(entry point fake_bad\): .*registry"),
    # a misspelt hook: named, with the hook it was probably meant to be
    ("taskbert_register_task", ["register"],
     "plugin 'bad' implements an unknown hook 'taskbert_register_task' "
     r"\(did you mean 'taskbert_register_tasks'\?\)"),
    # a hook of an earlier version: what replaced it
    ("taskbert_load_encoder", ["spec"],
     "plugin 'bad' implements an unknown hook 'taskbert_load_encoder' "
     r"\(it was replaced by taskbert_encoder_source, which returns a taskbert.EncoderSource"),
])
def test_a_broken_plugin_is_one_line_naming_it_and_the_way_around_it(monkeypatch, hook_name, argnames,
                                                                     expected):
    _with_entry_points(monkeypatch, bad=_hookimpl_plugin(hook_name, argnames))
    try:
        with pytest.raises(TaskbertError, match=expected) as info:
            plugin_mod.get_plugin_manager()
        assert "\n" not in str(info.value) and "TASKBERT_DISABLE_PLUGINS=bad" in str(info.value)
        monkeypatch.setenv("TASKBERT_DISABLE_PLUGINS", "bad")
        plugin_mod.reset()
        assert "sentence_classification" in plugin_mod.registries().tasks
    finally:
        plugin_mod.reset()


@pytest.mark.parametrize("registered, expected", [
    (object, "registered <class 'object'> as a task: register takes a taskbert.Task subclass"),
    ("a string", "registered 'a string' as a task"),
])
def test_registering_something_that_is_not_a_task_is_one_line(monkeypatch, registered, expected):
    plugin = _hookimpl_plugin("taskbert_register_tasks", ["register"],
                              lambda register: register(registered))
    _with_entry_points(monkeypatch, odd=plugin)
    try:
        with pytest.raises(TaskbertError, match="plugin 'odd' " + expected.replace("(", r"\(")):
            plugin_mod.registries()
    finally:
        plugin_mod.reset()


def test_plugin_names_in_the_environment_that_match_nothing_are_warned_about(monkeypatch, capsys):
    _with_entry_points(monkeypatch, my_tasks=_hookimpl_plugin("taskbert_train_end", ["trainer", "metrics"]))
    monkeypatch.setenv("TASKBERT_LOAD_PLUGINS", "my_task")
    monkeypatch.setenv("TASKBERT_DISABLE_PLUGINS", "classification")
    try:
        registries = plugin_mod.registries()
        err = capsys.readouterr().err
        assert ("warning: TASKBERT_LOAD_PLUGINS: no plugin is named 'my_task' (did you mean 'my_tasks'?)"
                in err)
        assert ("warning: TASKBERT_DISABLE_PLUGINS: no plugin is named 'classification' "
                "(did you mean 'taskbert_plugins.classification'?)" in err)
        assert not plugin_mod.get_plugin_manager().has_plugin("my_tasks")
        # an unknown task then says which variables filtered the plugins
        with pytest.raises(UnknownNameError, match=r"\(TASKBERT_LOAD_PLUGINS=my_task is set and "
                                                   r"TASKBERT_DISABLE_PLUGINS=classification is set\)"):
            registries.tasks.get("mean_pool_classification")
        monkeypatch.setenv("TASKBERT_LOAD_PLUGINS", "my_tasks")
        monkeypatch.delenv("TASKBERT_DISABLE_PLUGINS")
        plugin_mod.reset()
        plugin_mod.registries()
        assert plugin_mod.get_plugin_manager().has_plugin("my_tasks")
        assert "warning" not in capsys.readouterr().err
    finally:
        plugin_mod.reset()


def test_an_encoder_source_of_a_plugins_own_is_checked_once_and_loaded_once(monkeypatch, tmp_path,
                                                                             tiny_encoder, sentiment_data):
    """Offline, 'in-house://tiny' is neither a folder nor a cached hub id: the built-in source
    refuses it, but a plugin's ``taskbert_encoder_source`` serves it, in validate and run alike;
    the core calls its ``check`` once per command and its ``load`` once per run."""
    from types import SimpleNamespace

    from taskbert import EncoderSource, hookimpl
    from taskbert.encoder import load_model, load_tokenizer
    from taskbert.testing import run_spec, write_spec

    calls = []

    class InHouse(EncoderSource):
        name = "in-house://tiny"

        def check(self):
            calls.append("check")

        def load(self):
            calls.append("load")
            return load_model(tiny_encoder), load_tokenizer(tiny_encoder)

    @hookimpl
    def taskbert_encoder_source(spec):
        return InHouse() if spec.encoder.model == "in-house://tiny" else None

    _with_entry_points(monkeypatch, inhouse=SimpleNamespace(taskbert_encoder_source=taskbert_encoder_source))
    try:
        train, dev = sentiment_data
        spec = {"task": "sentence_classification", "encoder": {"model": "in-house://tiny", "max_length": 32},
                "data": {"train": train, "validation": dev},
                "train": {"max_steps": 2, "batch_size": 16, "loggers": []}, "output": str(tmp_path / "run")}
        result = CliRunner().invoke(cli, ["validate", write_spec(spec, str(tmp_path))])
        assert result.exit_code == 0, result.output
        assert calls == ["check"]
        run_spec(spec, str(tmp_path))
        assert calls == ["check", "check", "load"]
        monkeypatch.setenv("TASKBERT_DISABLE_PLUGINS", "inhouse")   # without the plugin: refused
        plugin_mod.reset()
        result = CliRunner().invoke(cli, ["validate", write_spec(spec, str(tmp_path))])
        assert result.exit_code == 2 and "model folder not found: 'in-house://tiny'" in result.stderr
    finally:
        plugin_mod.reset()


def test_the_builtin_source_checks_the_folder_once_per_run(monkeypatch, tmp_path, tiny_encoder, sentiment_data):
    """One check of ``encoder.model`` per command, however many parts of the run need its paths."""
    from taskbert import encoder as enc
    from taskbert.testing import run_spec

    seen = []
    real = enc.check_encoder
    monkeypatch.setattr(enc, "check_encoder", lambda spec: seen.append(spec.encoder.model) or real(spec))
    train, dev = sentiment_data
    run_spec({"task": "sentence_classification", "encoder": {"model": tiny_encoder, "max_length": 32},
              "data": {"train": train, "validation": dev},
              "train": {"max_steps": 2, "batch_size": 16, "loggers": []}, "output": str(tmp_path / "run")},
             str(tmp_path))
    assert len(seen) == 1


def test_plugin_commands_are_there_for_click_runner_too(monkeypatch):
    """A plugin's command is found by ``CliRunner().invoke(cli, ...)`` (what a plugin's own
    tests do), not only through the console script's ``main()``."""
    import click

    @click.command("hello-plugin")
    def hello():
        click.echo("hello from a plugin")

    plugin = _hookimpl_plugin("taskbert_register_commands", ["cli"], lambda cli: cli.add_command(hello))
    _with_entry_points(monkeypatch, greeter=plugin)
    monkeypatch.setattr(type(cli), "plugins_added", False)
    monkeypatch.setattr(cli, "plugins_added", False, raising=False)
    try:
        result = CliRunner().invoke(cli, ["hello-plugin"])
        assert result.exit_code == 0 and "hello from a plugin" in result.output, result.output
    finally:
        cli.commands.pop("hello-plugin", None)
        plugin_mod.reset()


def test_a_duplicate_of_a_builtin_blames_the_plugin(monkeypatch):
    plugin = _hookimpl_plugin("taskbert_register_metrics", ["register"],
                              lambda register: register("accuracy", lambda golds, preds: 0.0))
    _with_entry_points(monkeypatch, extras=plugin)
    try:
        with pytest.raises(TaskbertError, match="duplicate metric 'accuracy': registered by "
                                                "taskbert_plugins.metrics and again by extras; "
                                                "TASKBERT_DISABLE_PLUGINS=extras runs"):
            plugin_mod.registries()
    finally:
        plugin_mod.reset()


def test_trace_names_each_hook_call_and_its_plugins_in_call_order(monkeypatch, capsys):
    monkeypatch.setenv("TASKBERT_TRACE_PLUGINS", "1")
    plugin_mod.reset()
    try:
        pm = plugin_mod.get_plugin_manager()
        tasks = []
        pm.hook.taskbert_register_tasks(register=lambda *a, **k: tasks.append(a))
        lines = [ln for ln in capsys.readouterr().err.splitlines() if "taskbert_register_tasks" in ln]
        assert len(lines) == 1 and lines[0].startswith("taskbert trace: taskbert_register_tasks(register) -> ")
        called = lines[0].split(" -> ")[1].split(", ")
        impls = [pm.get_name(i.plugin) for i in reversed(pm.hook.taskbert_register_tasks.get_hookimpls())]
        assert called == impls and "taskbert_plugins.classification" in called
    finally:
        monkeypatch.delenv("TASKBERT_TRACE_PLUGINS")
        plugin_mod.reset()
    pm = plugin_mod.get_plugin_manager()
    pm.hook.taskbert_register_tasks(register=lambda *a, **k: None)
    assert "taskbert trace" not in capsys.readouterr().err


def test_a_registration_hook_that_raises_is_one_line(monkeypatch):
    """A plugin's bug inside taskbert_register_tasks was a traceback on every command."""
    def broken(register):
        raise ValueError("oops in the plugin")
    _with_entry_points(monkeypatch, buggy=_hookimpl_plugin("taskbert_register_tasks", ["register"], broken))
    try:
        with pytest.raises(TaskbertError, match=r"plugin 'buggy' failed in taskbert_register_tasks: ValueError: "
                                                r"oops in the plugin; TASKBERT_DISABLE_PLUGINS=buggy runs"):
            plugin_mod.registries()
    finally:
        plugin_mod.reset()


def test_trace_shows_the_registration_calls(monkeypatch, capsys):
    monkeypatch.setenv("TASKBERT_TRACE_PLUGINS", "1")
    plugin_mod.reset()
    try:
        plugin_mod.registries()
        err = capsys.readouterr().err
        assert "taskbert trace: taskbert_register_tasks(register) -> taskbert_plugins.classification" in err
        assert "taskbert trace: taskbert_register_metrics(register) -> taskbert_plugins.metrics" in err
    finally:
        monkeypatch.delenv("TASKBERT_TRACE_PLUGINS")
        plugin_mod.reset()
