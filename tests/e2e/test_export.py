"""taskbert export --format onnx: ONNX Runtime and torch give the same predictions."""

import http.client
import importlib.util
import json
import os

import pytest
from click.testing import CliRunner

from taskbert.cli import cli

pytest.importorskip("onnxruntime", reason="install the test extra: pip install -e '.[test]'")
pytest.importorskip("onnx")

TEXTS = ["the movie was great", "an awful plot", "superb",
         "the actor was nice and the film fine and the plot was lovely and it was a good scene",
         "ugly scene", "a terrible film and a poor plot", "it was the film"]


@pytest.fixture(scope="module")
def trained(trained_run):
    return trained_run


@pytest.fixture(scope="module")
def exported(trained):
    pytest.importorskip("onnxscript")
    out = os.path.join(os.path.dirname(trained), "onnx")
    result = CliRunner().invoke(cli, ["export", trained, "--format", "onnx", "-o", out])
    assert result.exit_code == 0, result.output
    assert "100% same predictions" in result.output
    return out


def torch_predictions(run_dir, texts):
    from taskbert.cli.runs import load_run, predict_examples

    loaded = load_run(run_dir)
    examples = [loaded.task.example_from_record({"text": t}, f"t{i}", labelled=False) for i, t in enumerate(texts)]
    return loaded.task, examples, predict_examples(loaded, examples, batch_size=4)


def assert_same(ours, theirs, tol=1e-5):
    assert [p["label"] for p in ours] == [p["label"] for p in theirs]
    for a, b in zip(ours, theirs):
        for label in a["probabilities"]:
            assert abs(a["probabilities"][label] - b["probabilities"][label]) <= tol


def test_export_folder_holds_model_tokenizer_and_labels(exported):
    files = set(os.listdir(exported))
    assert {"model.onnx", "tokenizer.json", "config.json", "taskbert.json"} <= files
    info = json.load(open(os.path.join(exported, "taskbert.json")))
    assert info["task"] == "sentence_classification" and info["task_state"]["labels"] == ["neg", "pos"]
    assert info["onnx"]["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert info["onnx"]["outputs"] == ["logits"] and info["onnx"]["exporter"] == "dynamo"
    assert info["onnx"]["parity"]["agreement"] == 1.0 and info["onnx"]["parity"]["max_abs_diff"] < 1e-4
    assert json.load(open(os.path.join(exported, "config.json")))["id2label"] == {"0": "neg", "1": "pos"}


def test_onnxruntime_matches_torch_on_new_inputs(trained, exported):
    from taskbert.cli.export import OnnxModel

    task, examples, ours = torch_predictions(trained, TEXTS)
    onnx_model = OnnxModel(exported)
    # batches of mixed lengths (padding) and a batch of one (no padding) both agree
    assert_same(ours, onnx_model.predict(examples, batch_size=4))
    assert_same(ours[:1], onnx_model.predict(examples[:1], batch_size=1))
    assert ours[0]["label"] == "pos" and ours[1]["label"] == "neg"


def test_export_is_usable_without_taskbert(trained, exported):
    """A consumer needs only onnxruntime, the tokenizer file and config.json's label map."""
    import numpy as np
    import onnxruntime as ort
    from tokenizers import Tokenizer

    _, _, ours = torch_predictions(trained, TEXTS)
    tok = Tokenizer.from_file(os.path.join(exported, "tokenizer.json"))
    id2label = json.load(open(os.path.join(exported, "config.json")))["id2label"]
    session = ort.InferenceSession(os.path.join(exported, "model.onnx"), providers=["CPUExecutionProvider"])
    labels = []
    for text in TEXTS:
        enc = tok.encode(text)
        feed = {"input_ids": np.array([enc.ids], dtype=np.int64),
                "attention_mask": np.array([enc.attention_mask], dtype=np.int64),
                "token_type_ids": np.array([enc.type_ids], dtype=np.int64)}
        logits = session.run(["logits"], feed)[0]
        labels.append(id2label[str(int(logits[0].argmax()))])
    assert labels == [p["label"] for p in ours]


def test_predict_and_serve_accept_the_export_folder(trained, exported, tmp_path):
    from taskbert.cli.serve import Predictor

    src = tmp_path / "in.txt"
    src.write_text("\n".join(TEXTS) + "\n")
    a = CliRunner().invoke(cli, ["predict", trained, str(src)])
    b = CliRunner().invoke(cli, ["predict", exported, str(src)])
    assert a.exit_code == 0 and b.exit_code == 0, (a.output, b.output)
    assert_same([json.loads(x) for x in a.stdout.splitlines()], [json.loads(x) for x in b.stdout.splitlines()])
    predictor = Predictor(exported)
    assert predictor.backend == "onnxruntime" and predictor.task.name == "sentence_classification"
    if importlib.util.find_spec("uvicorn") is None:
        return
    from taskbert.cli.serve import start_server

    srv = start_server(exported)     # over HTTP, through the micro-batcher, as predict gave
    try:
        conn = http.client.HTTPConnection(*srv.address, timeout=30)
        conn.request("POST", "/predict", json.dumps({"inputs": TEXTS}), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200
        assert_same(json.loads(resp.read())["predictions"], [json.loads(x) for x in b.stdout.splitlines()])
        assert srv.state.predictor.backend == "onnxruntime"
    finally:
        srv.stop()


def test_torchscript_exporter_agrees_too(trained, tmp_path):
    from taskbert.cli.export import OnnxModel

    out = str(tmp_path / "ts")
    result = CliRunner().invoke(cli, ["export", trained, "--exporter", "torchscript", "-o", out])
    assert result.exit_code == 0, result.output
    _, examples, ours = torch_predictions(trained, TEXTS)
    assert_same(ours, OnnxModel(out).predict(examples))


def test_a_disagreeing_export_is_refused_and_not_written(trained, tmp_path, monkeypatch):
    from taskbert.cli.export import OnnxModel

    real = OnnxModel.run_rows

    def skewed(self, rows, batch_size=64):  # what a broken graph would give
        return [[p[1], p[0]] for p in real(self, rows, batch_size)]

    monkeypatch.setattr(OnnxModel, "run_rows", skewed)
    out = tmp_path / "bad"
    result = CliRunner().invoke(cli, ["export", trained, "--exporter", "torchscript", "-o", str(out)])
    assert result.exit_code == 1 and "disagree on the sample" in result.output
    assert not out.exists() and not [f for f in os.listdir(tmp_path) if f.startswith(".bad")]


def test_missing_onnx_packages_is_one_clear_line(trained, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    result = CliRunner().invoke(cli, ["export", trained])
    assert result.exit_code == 2
    assert "needs onnxruntime, not installed; run: pip install 'taskbert[onnx]'" in result.output
