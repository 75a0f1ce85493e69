"""End to end: a tiny encoder learns a pair label that needs both texts and their order
(which text has more good words?) and a similarity score that adds up both texts."""

import json
import os
import random

import pytest
from click.testing import CliRunner

from taskbert.cli import cli
from taskbert.testing import make_tiny_encoder, run_spec

FILLER = "the cat sat on mat dog ran under tree big small old new house garden and then it was".split()
GOOD = "good great nice".split()
WORDS = FILLER + GOOD


def sentence(rng, k):
    """3-7 filler words with ``k`` good words put in at random places."""
    words = [rng.choice(FILLER) for _ in range(rng.randint(3, 7))]
    for _ in range(k):
        words.insert(rng.randrange(len(words) + 1), rng.choice(GOOD))
    return " ".join(words)


def write_pairs(path, n, seed):
    """premise and hypothesis with 0-2 good words each; the label says which has more
    (first / second / same); 10% rows '-' (no consensus, as in SNLI). Majority is 1/3;
    reading only one text, or both without telling them apart, gets 5/9 at best."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            ka, kb = rng.randint(0, 2), rng.randint(0, 2)
            label = "first" if ka > kb else "second" if kb > ka else "same"
            fh.write(json.dumps({"premise": sentence(rng, ka), "hypothesis": sentence(rng, kb),
                                 "gold": "-" if rng.random() < 0.1 else label, "pairID": str(i)}) + "\n")
    return str(path)


def write_similarity(path, n, seed):
    """tsv s1, s2, score = good words in s1 + good words in s2 (0-4): a model that reads
    only one side reaches a correlation of about 0.71 at best."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("s1\ts2\tscore\n")
        for _ in range(n):
            ka, kb = rng.randint(0, 2), rng.randint(0, 2)
            fh.write(f"{sentence(rng, ka)}\t{sentence(rng, kb)}\t{ka + kb}\n")
    return str(path)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return make_tiny_encoder(str(tmp_path_factory.mktemp("pair-encoder")), WORDS)


def read_jsonl(path):
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@pytest.fixture(scope="module")
def pair_run(encoder, tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    spec = {"task": "sentence_pair", "encoder": {"model": encoder, "max_length": 32},
            "data": {"train": write_pairs(root / "train.jsonl", 800, 1),
                     "validation": write_pairs(root / "dev.jsonl", 200, 2)},
            "task_options": {"text_a_field": "premise", "text_b_field": "hypothesis",
                             "label_field": "gold", "drop_labels": ["-"]},
            "train": {"epochs": 4, "batch_size": 16, "lr": 2.0e-3, "log_every": 10, "seed": 3,
                      "loggers": []},
            "output": str(root / "run")}
    return run_spec(spec, str(root / "spec"))


def test_pair_loss_falls_and_accuracy_beats_chance(pair_run):
    metrics, run_dir = pair_run
    losses = [h["train/loss"] for h in read_jsonl(os.path.join(run_dir, "metrics.jsonl")) if "train/loss" in h]
    assert losses[-1] < 0.5 * losses[0], losses
    assert metrics["validation/accuracy"] >= 0.9, metrics    # one text alone: 5/9 at best
    preds = read_jsonl(os.path.join(run_dir, "predictions.jsonl"))
    assert all(p["gold"] != "-" for p in preds) and 160 <= len(preds) < 200   # '-' rows skipped


def test_pair_predict_matches_plain_transformers(pair_run, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _, run_dir = pair_run
    pairs = [("the good cat sat on a great mat", "the dog ran"),
             ("the cat sat", "a nice dog ran under the tree"),
             ("good and then nice", "great and good")]
    best = os.path.join(run_dir, "best")
    model = AutoModelForSequenceClassification.from_pretrained(best).eval()
    tok = AutoTokenizer.from_pretrained(best)
    with torch.inference_mode():
        logits = model(**tok([a for a, _ in pairs], [b for _, b in pairs], return_tensors="pt",
                             padding=True)).logits
    hf = [model.config.id2label[i] for i in logits.argmax(-1).tolist()]
    src = tmp_path / "in.txt"      # plain text input: the two texts separated by a tab
    src.write_text("".join(f"{a}\t{b}\n" for a, b in pairs))
    result = CliRunner().invoke(cli, ["predict", run_dir, str(src)])
    assert result.exit_code == 0, result.output
    ours = [json.loads(x)["label"] for x in result.stdout.splitlines()]
    assert ours == hf == ["first", "second", "same"]


@pytest.mark.parametrize("lines, parts", [
    (["the cat\tthe dog\tran"], ("exactly one tab between the two texts", "found 2")),
    (["the cat\tthe dog", "the cat sat\t  "], ("in.txt:2", "field 'hypothesis' is empty")),
    (['{"premise": "the cat", "hypothesis": ""}'], ("in.jsonl:1", "field 'hypothesis' is empty")),
])
def test_pair_predict_refuses_bad_text_inputs(pair_run, tmp_path, lines, parts):
    _, run_dir = pair_run
    src = tmp_path / ("in.jsonl" if lines[0].startswith("{") else "in.txt")
    src.write_text("".join(line + "\n" for line in lines))
    result = CliRunner().invoke(cli, ["predict", run_dir, str(src)])
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and not result.stdout, result.output
    assert all(part in result.stderr for part in parts), result.stderr


def test_similarity_regression(encoder, tmp_path):
    spec = {"task": "sentence_pair", "encoder": {"model": encoder, "max_length": 32},
            "data": {"train": write_similarity(tmp_path / "train.tsv", 600, 1),
                     "validation": write_similarity(tmp_path / "dev.tsv", 100, 2)},
            "task_options": {"text_a_field": "s1", "text_b_field": "s2", "label_field": "score",
                             "objective": "regression"},
            "train": {"epochs": 4, "batch_size": 16, "lr": 2.0e-3, "log_every": 10, "seed": 3,
                      "loggers": []},
            "output": str(tmp_path / "run")}
    metrics, run_dir = run_spec(spec, str(tmp_path / "spec"))
    assert metrics["validation/pearson"] >= 0.9 and metrics["validation/spearman"] >= 0.85, metrics
    config = json.load(open(os.path.join(run_dir, "best", "config.json")))
    assert config["problem_type"] == "regression" and config["num_labels"] == 1
    (tmp_path / "in.jsonl").write_text(json.dumps({"s1": "good cat great", "s2": "nice dog good"}) + "\n" +
                                       json.dumps({"s1": "the cat sat", "s2": "a dog ran"}) + "\n")
    result = CliRunner().invoke(cli, ["predict", run_dir, str(tmp_path / "in.jsonl")])
    assert result.exit_code == 0, result.output
    high, low = [json.loads(x)["score"] for x in result.stdout.splitlines()]
    assert high > 2.5 and low < 1.5, (high, low)    # gold 4 and 0
