"""The CPU speed plugin as a plugin: one hook, off with TASKBERT_DISABLE_PLUGINS, the same
results as the plain computation, its setting checked before weights load."""

import json
import os

import pytest
import torch
import yaml
from click.testing import CliRunner

from taskbert.plugins import manager as plugin_mod
from taskbert.cli import cli
from taskbert.task import whole_encoder
from taskbert.testing import run_spec, tiny_classification_spec


@pytest.fixture()
def fresh_plugins():
    plugin_mod.reset()
    yield
    plugin_mod.reset()


def _run(tmp_path, tiny_encoder, sentiment_data, name, **train):
    train_file, dev = sentiment_data
    spec = tiny_classification_spec(tiny_encoder, train_file, dev, tmp_path / name, epochs=2,
                                    precision="fp32", **train)
    return run_spec(spec, str(tmp_path))


def _predictions(run_dir):
    with open(os.path.join(run_dir, "predictions.jsonl"), encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def test_prepare_model_swaps_exact_equivalents_on_a_cpu(tiny_encoder, fresh_plugins, monkeypatch):
    from taskbert.encoder import load_model
    from taskbert.task import TaskModel
    from taskbert_cpu.dropout import HashDropout
    from taskbert_plugins.classification import SentenceClassification

    task = SentenceClassification()
    task.labels = ["neg", "pos"]
    encoder = load_model(tiny_encoder)
    model = TaskModel(encoder, task.build_head(encoder))
    assert model.encoder_pass is whole_encoder
    hook = plugin_mod.hook()
    hook.taskbert_prepare_model(model=model, device=torch.device("cpu"), phase="train")
    assert getattr(model.encoder_pass, "taskbert_cpu", False)
    assert any(isinstance(m, HashDropout) for m in model.modules())
    again = model.encoder_pass
    hook.taskbert_prepare_model(model=model, device=torch.device("cpu"), phase="predict")
    assert model.encoder_pass is again                      # not wrapped twice
    # not on another device (meta: no weights are touched)
    other = TaskModel(load_model(tiny_encoder), task.build_head(encoder))
    hook.taskbert_prepare_model(model=other, device=torch.device("meta"), phase="train")
    assert other.encoder_pass is whole_encoder
    assert not any(isinstance(m, HashDropout) for m in other.modules())
    monkeypatch.setenv("TASKBERT_DROPOUT_MASKS", "torch")
    third = TaskModel(load_model(tiny_encoder), task.build_head(encoder))
    hook.taskbert_prepare_model(model=third, device=torch.device("cpu"), phase="train")
    assert not any(isinstance(m, HashDropout) for m in third.modules())


def test_prepare_model_leaves_a_cuda_model_as_it_is(tiny_encoder, fresh_plugins, monkeypatch):
    """The plugin never acts on CUDA (a CPU build of torch names the device without having
    it; the hook moves nothing): no hashed dropout, the stock encoder pass, no packed weights,
    malloc left alone, in either phase."""
    import taskbert_cpu.memory
    import taskbert_cpu.packed
    from taskbert.encoder import load_model
    from taskbert.task import TaskModel
    from taskbert_cpu.dropout import HashDropout
    from taskbert_plugins.classification import SentenceClassification

    monkeypatch.setenv("TASKBERT_DISABLE_PLUGINS", "taskbert_cuda")   # the GPU plugin does act there
    plugin_mod.reset()
    touched = []
    monkeypatch.setattr(taskbert_cpu.memory, "keep_freed_memory", lambda: touched.append("malloc"))
    monkeypatch.setattr(taskbert_cpu.packed, "pack_linear_weights", lambda m: touched.append("packed"))
    task = SentenceClassification()
    task.labels = ["neg", "pos"]
    encoder = load_model(tiny_encoder)
    model = TaskModel(encoder, task.build_head(encoder))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kinds = [type(m) for m in model.modules()]
    for phase in ("train", "predict"):
        plugin_mod.hook().taskbert_prepare_model(model=model, device=torch.device("cuda", 0), phase=phase)
    assert model.encoder_pass is whole_encoder
    assert [type(m) for m in model.modules()] == kinds and HashDropout not in kinds
    assert not touched
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_disabled_plugin_gives_the_same_model(tmp_path, tiny_encoder, sentiment_data, fresh_plugins, monkeypatch):
    """The tiny encoder has no dropout and the head's is set to 0, so the masks draw nothing:
    with and without the plugin the run must reach the same weights and predictions."""
    _, with_plugin = _run(tmp_path, tiny_encoder, sentiment_data, "with")
    monkeypatch.setenv("TASKBERT_DISABLE_PLUGINS", "taskbert_cpu")
    plugin_mod.reset()
    assert "taskbert_cpu" not in [p["name"] for p in plugin_mod.plugin_list()]
    _, without = _run(tmp_path, tiny_encoder, sentiment_data, "without")
    a, b = _predictions(with_plugin), _predictions(without)
    assert [p["label"] for p in a] == [p["label"] for p in b]
    for x, y in zip(a, b):
        assert max(abs(x["probabilities"][k] - y["probabilities"][k]) for k in x["probabilities"]) < 1e-5


def test_a_bad_dropout_setting_is_one_line_before_weights_load(tmp_path, tiny_encoder, sentiment_data,
                                                               fresh_plugins, monkeypatch):
    train, dev = sentiment_data
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(tiny_classification_spec(tiny_encoder, train, dev, tmp_path / "run")))
    monkeypatch.setenv("TASKBERT_DROPOUT_MASKS", "hashed")
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2
    assert "TASKBERT_DROPOUT_MASKS='hashed' is not one of auto, hash, torch" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("value, code", [("auto", 0), ("torch", 2)])
def test_the_retired_spec_key(tmp_path, tiny_encoder, sentiment_data, value, code):
    """train.dropout_masks left the spec: its old default still loads (older runs' spec.yaml),
    another value says where the setting went."""
    train, dev = sentiment_data
    spec = tiny_classification_spec(tiny_encoder, train, dev, tmp_path / "run")
    spec["train"]["dropout_masks"] = value
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == code, result.output
    if code:
        assert "train.dropout_masks: moved to the CPU speed plugin" in result.stderr
        assert "TASKBERT_DROPOUT_MASKS" in result.stderr
