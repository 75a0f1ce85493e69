"""End to end on a RoBERTa-style encoder (positions from padding_idx + 1): the run's own
predictions, ``predict``, the whole encoder and the ONNX export give the same outputs."""

import json
import os

import pytest
from click.testing import CliRunner

from taskbert.cli import cli
from taskbert.testing import TINY_WORDS, make_tiny_encoder, run_spec, tiny_classification_spec, write_polarity_data
from tests.tasks.test_tagging_e2e import FILLER, LOC, PER, write_conll


def _read(path):
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _predict(run_dir, examples, whole=False):
    from taskbert.cli.runs import load_run, predict_examples

    loaded = load_run(run_dir)
    if whole:   # the stock encoder on every batch: the reference
        loaded.model.encoder._taskbert_first_token = loaded.model.encoder._taskbert_positions = False
    return predict_examples(loaded, examples, batch_size=8)


def assert_labels_agree(own, fast, whole, n):
    """The run's own predictions, the fast path's and the whole encoder's: ``n`` each, the same
    labels, probabilities within 1e-5 of the whole encoder's."""
    assert len(own) == len(fast) == len(whole) == n
    for a, b, c in zip(own, fast, whole):
        assert a["label"] == b["label"] == c["label"]
        for label in a["probabilities"]:
            assert abs(a["probabilities"][label] - c["probabilities"][label]) < 1e-5
            assert abs(b["probabilities"][label] - c["probabilities"][label]) < 1e-5


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    root = tmp_path_factory.mktemp("roberta-cls")
    encoder = make_tiny_encoder(str(root / "encoder"), TINY_WORDS, model_type="roberta")
    train = write_polarity_data(root / "train.jsonl", 300, 1)
    dev = write_polarity_data(root / "dev.jsonl", 40, 2)
    spec = tiny_classification_spec(encoder, train, dev, root / "run", epochs=3, precision="fp32")
    _, run_dir = run_spec(spec, str(root))
    return run_dir, dev


def test_roberta_classifier_predictions_agree_everywhere(classifier):
    from taskbert.cli.runs import load_run, read_inputs

    run_dir, dev = classifier
    own = [p for p in _read(os.path.join(run_dir, "predictions.jsonl")) if p["split"] == "validation"]
    examples = read_inputs(dev, load_run(run_dir).task)
    assert_labels_agree(own, _predict(run_dir, examples), _predict(run_dir, examples, whole=True), 40)


def test_roberta_classifier_onnx_export_agrees(classifier, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from taskbert.cli.export import OnnxModel
    from taskbert.cli.runs import load_run, read_inputs

    run_dir, dev = classifier
    out = str(tmp_path / "onnx")
    result = CliRunner().invoke(cli, ["export", run_dir, "--format", "onnx", "-o", out])
    assert result.exit_code == 0 and "100% same predictions" in result.output, result.output
    examples = read_inputs(dev, load_run(run_dir).task)
    ours, theirs = _predict(run_dir, examples), OnnxModel(out).predict(examples, batch_size=8)
    assert [p["label"] for p in ours] == [p["label"] for p in theirs]
    for a, b in zip(ours, theirs):
        assert max(abs(a["probabilities"][k] - b["probabilities"][k]) for k in a["probabilities"]) < 1e-4


def test_roberta_tagger_predictions_agree_everywhere(tmp_path):
    from taskbert.cli.runs import load_run, read_inputs

    encoder = make_tiny_encoder(str(tmp_path / "encoder"), PER + LOC + FILLER + ["acme", "corp", "y"],
                                model_type="roberta")
    dev = write_conll(tmp_path / "dev.txt", 30, 2)
    spec = {"task": "token_classification", "encoder": {"model": encoder, "max_length": 16},
            "data": {"format": "conll", "train": write_conll(tmp_path / "train.txt", 150, 1), "validation": dev},
            "train": {"epochs": 2, "batch_size": 16, "lr": 3e-3, "seed": 1, "loggers": [], "precision": "fp32"},
            "output": str(tmp_path / "run")}
    _, run_dir = run_spec(spec, str(tmp_path))
    own = [p for p in _read(os.path.join(run_dir, "predictions.jsonl")) if p["split"] == "validation"]
    examples = read_inputs(dev, load_run(run_dir).task)
    fast, whole = _predict(run_dir, examples), _predict(run_dir, examples, whole=True)
    assert len(own) == len(fast) == len(whole) == 30
    assert [p["tags"] for p in own] == [p["tags"] for p in fast] == [p["tags"] for p in whole]
    for a, b, c in zip(own, fast, whole):   # scores are rounded to 4 places
        assert max(abs(x - z) + abs(y - z) for x, y, z in zip(a["scores"], b["scores"], c["scores"])) <= 2e-4
