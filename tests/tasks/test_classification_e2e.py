"""End to end: a tiny encoder learns the synthetic sentiment task; outputs are usable."""

import json
import os

import pytest
from click.testing import CliRunner

from taskbert.cli import cli
from taskbert.testing import run_spec


def read_jsonl(path):
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@pytest.fixture()
def trained(classification_spec, tmp_path):
    metrics, run_dir = run_spec(classification_spec, str(tmp_path))
    return metrics, run_dir


def test_loss_falls_and_accuracy_beats_chance(trained):
    metrics, run_dir = trained
    history = read_jsonl(os.path.join(run_dir, "metrics.jsonl"))
    losses = [h["train/loss"] for h in history if "train/loss" in h]
    assert losses[-1] < 0.7 * losses[0], losses
    assert metrics["validation/accuracy"] >= 0.9  # chance is about 0.5


def test_run_folder_contents(trained):
    _, run_dir = trained
    for name in ("spec.yaml", "metrics.jsonl", "manifest.json", "predictions.jsonl", "best", "checkpoint"):
        assert os.path.exists(os.path.join(run_dir, name)), name
    manifest = json.load(open(os.path.join(run_dir, "manifest.json")))
    assert manifest["seed"] == 3 and len(manifest["data"]["train"]["sha256"]) == 64
    preds = read_jsonl(os.path.join(run_dir, "predictions.jsonl"))
    assert len(preds) == 100 and {p["split"] for p in preds} == {"validation"}
    assert set(preds[0]["probabilities"]) == {"neg", "pos"} and preds[0]["gold"] in ("neg", "pos")
    assert not [f for f in os.listdir(run_dir) if f.startswith(".")]  # no temp files left


def test_best_loads_in_plain_transformers_and_matches_predict(trained, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _, run_dir = trained
    best = os.path.join(run_dir, "best")
    model = AutoModelForSequenceClassification.from_pretrained(best).eval()
    tok = AutoTokenizer.from_pretrained(best)
    assert model.config.id2label == {0: "neg", 1: "pos"}
    texts = ["the movie was great", "an awful plot", "the actor was nice and the film fine",
             "ugly scene", "a terrible film and a poor plot"]
    with torch.inference_mode():
        logits = model(**tok(texts, return_tensors="pt", padding=True)).logits
    hf_labels = [model.config.id2label[i] for i in logits.argmax(-1).tolist()]
    src = tmp_path / "in.txt"
    src.write_text("\n".join(texts) + "\n")
    result = CliRunner().invoke(cli, ["predict", run_dir, str(src), "-o", str(tmp_path / "out.jsonl")])
    assert result.exit_code == 0, result.output
    ours = [p["label"] for p in read_jsonl(tmp_path / "out.jsonl")]
    assert ours == hf_labels
    assert ours[:2] == ["pos", "neg"]


def test_predict_jsonl_and_csv(trained, tmp_path):
    _, run_dir = trained
    (tmp_path / "in.jsonl").write_text('{"text": "great film"}\n{"text": "nasty plot"}\n')
    (tmp_path / "in.csv").write_text('text,id\n"great film",1\n"nasty, ugly plot",2\n')
    for name in ("in.jsonl", "in.csv"):
        result = CliRunner().invoke(cli, ["predict", run_dir, str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        lines = [json.loads(x) for x in result.stdout.splitlines()]
        assert [x["label"] for x in lines] == ["pos", "neg"]
        assert abs(sum(lines[0]["probabilities"].values()) - 1) < 1e-4


def test_refuses_to_overwrite_without_flag(trained, classification_spec, tmp_path):
    from taskbert import SpecError

    with pytest.raises(SpecError, match="already holds a run"):
        run_spec(classification_spec, str(tmp_path), overwrite=False)
