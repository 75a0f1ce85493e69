"""``taskbert_cuda`` as a plugin: it acts on CUDA only (unless TASKBERT_PADDING_FREE=on), its
setting is checked before weights load, and a forced padding-free run predicts what a padded
one does."""

import json
import os

import pytest
import torch
import yaml
from click.testing import CliRunner

from taskbert.cli import cli
from taskbert.plugins import manager as plugin_mod
from taskbert.task import whole_encoder
from taskbert.testing import run_spec, tiny_classification_spec


@pytest.fixture()
def fresh_plugins(monkeypatch):
    monkeypatch.setenv("TASKBERT_DISABLE_PLUGINS", "taskbert_cpu")   # this plugin alone
    plugin_mod.reset()
    yield
    plugin_mod.reset()


def _model(tiny_encoder):
    from taskbert.encoder import load_model
    from taskbert.task import TaskModel
    from taskbert_plugins.classification import SentenceClassification

    task = SentenceClassification()
    task.labels = ["neg", "pos"]
    encoder = load_model(tiny_encoder)
    return TaskModel(encoder, task.build_head(encoder))


def test_nothing_changes_on_a_cpu(tiny_encoder, fresh_plugins):
    model = _model(tiny_encoder)
    for phase in ("train", "predict"):
        plugin_mod.hook().taskbert_prepare_model(model=model, device=torch.device("cpu"), phase=phase)
    assert model.encoder_pass is whole_encoder
    assert model.encoder.config._attn_implementation == "sdpa"


def test_on_cuda_the_pass_and_the_attention_change(tiny_encoder, fresh_plugins, cpu_varlen):
    """A CPU build of torch names the CUDA device without having one; the hook moves nothing."""
    model = _model(tiny_encoder)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for phase in ("train", "predict"):
        plugin_mod.hook().taskbert_prepare_model(model=model, device=torch.device("cuda", 0), phase=phase)
    assert getattr(model.encoder_pass, "taskbert_padding_free", False)
    assert model.encoder_pass.previous is whole_encoder   # wrapped once
    assert model.encoder.config._attn_implementation == "taskbert_varlen"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_off_leaves_cuda_models_alone(tiny_encoder, fresh_plugins, monkeypatch):
    monkeypatch.setenv("TASKBERT_PADDING_FREE", "off")
    model = _model(tiny_encoder)
    plugin_mod.hook().taskbert_prepare_model(model=model, device=torch.device("cuda", 0), phase="predict")
    assert model.encoder_pass is whole_encoder
    assert model.encoder.config._attn_implementation == "sdpa"


def test_a_bad_setting_is_one_line_before_weights_load(tmp_path, tiny_encoder, sentiment_data,
                                                        fresh_plugins, monkeypatch):
    train, dev = sentiment_data
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(tiny_classification_spec(tiny_encoder, train, dev, tmp_path / "run")))
    monkeypatch.setenv("TASKBERT_PADDING_FREE", "yes")
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: TASKBERT_PADDING_FREE='yes' is not one of auto, on, off"
    assert not (tmp_path / "run").exists()


def _labels(path):
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def test_a_forced_padding_free_predict_equals_the_padded_one(tmp_path, tiny_encoder, sentiment_data,
                                                             fresh_plugins, monkeypatch):
    """TASKBERT_PADDING_FREE=on packs on a CPU too (sdpa with transformers' packed mask): the
    trained model's predictions are those of the padded pass; the packed run itself trains."""
    from taskbert_cuda import packing

    packed, call = [], packing.packed_call
    monkeypatch.setattr(packing, "packed_call", lambda *a: packed.append(1) or call(*a))
    train, dev = sentiment_data
    monkeypatch.setenv("TASKBERT_PADDING_FREE", "on")
    plugin_mod.reset()
    spec = tiny_classification_spec(tiny_encoder, train, dev, tmp_path / "run", epochs=3, precision="fp32")
    final, run_dir = run_spec(spec, str(tmp_path))
    assert final["validation/accuracy"] > 0.7
    assert len(packed) > 20                          # training and evaluation batches ran packed
    outs, trained = {}, len(packed)
    for value in ("on", "off"):
        monkeypatch.setenv("TASKBERT_PADDING_FREE", value)
        plugin_mod.reset()
        out = tmp_path / f"pred-{value}.jsonl"
        result = CliRunner().invoke(cli, ["predict", os.path.join(run_dir, "best"), str(dev), "-o", str(out)])
        assert result.exit_code == 0, result.output
        outs[value] = _labels(out)
        assert (len(packed) > trained) == (value == "on")
        trained = len(packed)
    assert [p["label"] for p in outs["on"]] == [p["label"] for p in outs["off"]]
    for x, y in zip(outs["on"], outs["off"]):
        assert max(abs(x["probabilities"][k] - y["probabilities"][k]) for k in x["probabilities"]) < 1e-5
