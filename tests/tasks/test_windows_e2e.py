"""Long documents end to end: on texts whose label is decided by a word near their end,
``long_inputs: windows`` learns the task and ``truncate`` (same max_length, same budget) stays
at chance; the windowed run predicts, exports, reloads and resumes as any other run."""

import json
import os

import pytest
import torch
from click.testing import CliRunner

from taskbert.cli import cli
from taskbert.testing import Crash, crash_at, run_spec, write_long_polarity_data, write_spec

MAX_LENGTH = 24   # 22 text tokens a window; the deciding word sits at token 34 or later


@pytest.fixture(scope="module")
def long_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("long-data")
    return write_long_polarity_data(folder / "train.jsonl", 160, 1), write_long_polarity_data(folder / "dev.jsonl", 60, 2)


def long_spec(encoder, data, output, long_inputs="windows", **options):
    return {"task": "sentence_classification", "encoder": {"model": encoder, "max_length": MAX_LENGTH},
            "data": {"train": data[0], "validation": data[1]},
            "task_options": {"long_inputs": long_inputs, "window_overlap": 4, **options},
            "train": {"epochs": 8, "batch_size": 16, "lr": 1.0e-3, "log_every": 10, "seed": 3,
                      "loggers": [], "precision": "fp32"},
            "output": str(output)}


@pytest.fixture(scope="module")
def windows_run(tiny_encoder, long_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("windows-run")
    return run_spec(long_spec(tiny_encoder, long_data, folder / "run"), folder)


def test_windows_learn_what_truncation_cannot_see(windows_run, tiny_encoder, long_data, tmp_path):
    metrics, _ = windows_run
    truncated, _ = run_spec(long_spec(tiny_encoder, long_data, tmp_path / "run", long_inputs="truncate"), tmp_path)
    assert metrics["validation/accuracy"] >= 0.9
    assert truncated["validation/accuracy"] <= 0.7     # chance is 0.5; the word is never in view


def test_attention_pooling_learns_and_reloads(tiny_encoder, long_data, tmp_path):
    metrics, run = run_spec(long_spec(tiny_encoder, long_data, tmp_path / "run", window_pooling="attention"), tmp_path)
    assert metrics["validation/accuracy"] >= 0.9
    from safetensors import safe_open
    with safe_open(os.path.join(run, "best", "model.safetensors"), "pt") as fh:
        assert {"window_attention.score.weight", "window_attention.score.bias"} <= set(fh.keys())
    _predict_matches_the_run(run, long_data[1], tmp_path)


def _predict_matches_the_run(run, dev, tmp_path, model=None):
    """``taskbert predict`` with ``model`` (default: the run) gives the run's validation predictions."""
    out = tmp_path / "predicted.jsonl"
    result = CliRunner().invoke(cli, ["predict", model or run, dev, "--output", str(out)])
    assert result.exit_code == 0, result.output
    with open(os.path.join(run, "predictions.jsonl"), encoding="utf-8") as fh:
        saved = [json.loads(line) for line in fh if '"validation"' in line]
    with open(out, encoding="utf-8") as fh:
        predicted = [json.loads(line) for line in fh]
    assert [p["label"] for p in predicted] == [p["label"] for p in saved]
    for p, s in zip(predicted, saved):
        for label, value in p["probabilities"].items():
            assert abs(value - s["probabilities"][label]) < 1e-5


def test_predict_and_onnx_export_pool_as_training_did(windows_run, long_data, tmp_path):
    _, run = windows_run
    _predict_matches_the_run(run, long_data[1], tmp_path)
    pytest.importorskip("onnxruntime")
    result = CliRunner().invoke(cli, ["export", run, "--format", "onnx", "--output", str(tmp_path / "onnx")])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "onnx" / "taskbert.json", encoding="utf-8") as fh:
        onnx = json.load(fh)["onnx"]
    assert "example_index" in onnx["inputs"] and onnx["parity"]["agreement"] == 1.0
    _predict_matches_the_run(run, long_data[1], tmp_path, model=str(tmp_path / "onnx"))


def test_mean_pooled_best_is_a_plain_classifier_of_windows(windows_run, long_data):
    """``best/`` of a mean-pooled run loads in AutoModelForSequenceClassification with no
    missing or extra keys; the mean of its window logits gives taskbert's probabilities."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _, run = windows_run
    model, info = AutoModelForSequenceClassification.from_pretrained(os.path.join(run, "best"),
                                                                     output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    tokenizer = AutoTokenizer.from_pretrained(os.path.join(run, "best"))
    with open(long_data[1], encoding="utf-8") as fh:
        texts = [json.loads(line)["text"] for line in fh][:5]
    with open(os.path.join(run, "predictions.jsonl"), encoding="utf-8") as fh:
        saved = [json.loads(line) for line in fh][:5]
    model.eval()
    for text, pred in zip(texts, saved):
        enc = tokenizer(text, truncation=True, max_length=MAX_LENGTH, stride=4, return_overflowing_tokens=True,
                        padding=True, return_tensors="pt")
        with torch.no_grad():
            logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                           token_type_ids=enc["token_type_ids"]).logits.mean(0)
        probs = torch.softmax(logits, -1)
        labels = [model.config.id2label[i] for i in range(len(probs))]
        for label, p in zip(labels, probs.tolist()):
            assert abs(p - pred["probabilities"][label]) < 1e-5


def test_debug_data_counts_windows_and_what_truncation_would_cut(tiny_encoder, long_data, tmp_path):
    path = write_spec(long_spec(tiny_encoder, long_data, tmp_path / "run", max_windows=2), tmp_path)
    result = CliRunner().invoke(cli, ["debug", "data", path, "--json"])
    assert result.exit_code == 0, result.output
    train = json.loads(result.output)["splits"]["train"]
    windows = {int(n): k for n, k in train["windows"].items()}
    assert set(windows) == {2} and sum(windows.values()) == 160      # every text needs 3, keeps 2
    cut = train["truncation"]["tokens left out by max_windows"]
    truncated = train["truncation"]["tokens cut by max_length with long_inputs: truncate"]
    assert cut["total"] == truncated["total"] and 0 < cut["cut"] < truncated["cut"]


def test_windowed_resume_is_bit_identical(tiny_encoder, long_data, tmp_path):
    spec = long_spec(tiny_encoder, long_data, tmp_path / "a" / "run", dropout=0.2)
    spec["train"].update(epochs=2, grad_accum=2, save_every=2, eval_every=4, log_every=3)
    run_spec(spec, tmp_path / "a")
    spec["output"] = str(tmp_path / "b" / "run")
    with crash_at(6), pytest.raises(Crash):
        run_spec(spec, tmp_path / "b")
    from taskbert.config.spec import load_spec
    from taskbert.run import execute
    execute(load_spec(str(tmp_path / "b" / "spec.yaml")), resume=True)
    for name in ("best/model.safetensors", "predictions.jsonl"):
        with open(tmp_path / "a" / "run" / name, "rb") as a, open(tmp_path / "b" / "run" / name, "rb") as b:
            assert a.read() == b.read(), name


def test_pairs_in_windows_learn_a_word_near_the_end_of_the_longer_text(tiny_encoder, long_data, tmp_path):
    """sentence_pair with the deciding word near the end of the long second text: the pair's
    windows repeat the short first text and are pooled, and the task is learnt."""
    paths = []
    for source in long_data:
        with open(source, encoding="utf-8") as fh:
            records = [json.loads(line) for line in fh]
        path = tmp_path / os.path.basename(source)
        with open(path, "w", encoding="utf-8") as fh:
            for r in records:
                fh.write(json.dumps({"sentence1": "the film", "sentence2": r["text"], "label": r["label"]}) + "\n")
        paths.append(str(path))
    spec = long_spec(tiny_encoder, paths, tmp_path / "run", window_pooling="max")
    spec["task"] = "sentence_pair"
    metrics, run = run_spec(spec, tmp_path)
    assert metrics["validation/accuracy"] >= 0.9
    _predict_matches_the_run(run, paths[1], tmp_path)
