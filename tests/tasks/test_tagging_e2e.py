"""End to end: a tiny encoder learns a synthetic NER task; predictions hold exactly one
tag per word (long sentences included), and the CLI predicts on text and CoNLL files."""

import json
import os
import random

import pytest
from click.testing import CliRunner

from taskbert.cli import cli
from taskbert.testing import make_tiny_encoder, run_spec

PER = ["alice", "bob", "bobby"]        # "bobby" is three subtokens: bob ##b ##y
LOC = ["paris", "london"]
FILLER = "went to in lives works at the movie was and it".split()


def sentence(rng, length):
    words, tags = [], []
    while len(words) < length:
        r = rng.random()
        if r < 0.15:
            words.append(rng.choice(PER)), tags.append("B-per")
        elif r < 0.3:
            words.append(rng.choice(LOC)), tags.append("B-loc")
        elif r < 0.4:
            words += ["acme", "corp"]
            tags += ["B-org", "I-org"]
        else:
            words.append(rng.choice(FILLER)), tags.append("O")
    return words, tags


def write_conll(path, n, seed, long_every=0):
    """``n`` tweets of 3-12 words; every ``long_every``-th one has 40-60 words (longer than
    the 16-token windows of the spec)."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            long = long_every and i % long_every == 0
            words, tags = sentence(rng, rng.randint(40, 60) if long else rng.randint(3, 12))
            fh.write("".join(f"{w}\t{t}\n" for w, t in zip(words, tags)) + "\n")
    return str(path)


def read_jsonl(path):
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("tagging")
    encoder = make_tiny_encoder(str(root / "encoder"), PER + LOC + FILLER + ["acme", "corp", "y"])
    spec = {
        "task": "token_classification",
        "encoder": {"model": encoder, "max_length": 16},
        "data": {"format": "conll", "train": write_conll(root / "train.txt", 300, 1, long_every=25),
                 "validation": write_conll(root / "dev.txt", 60, 2, long_every=6)},
        "task_options": {"word_pooling": "mean", "subword_labels": "all"},
        "train": {"epochs": 3, "batch_size": 16, "lr": 1.0e-3, "log_every": 5, "seed": 5, "loggers": []},
        "output": str(root / "run"),
    }
    metrics, run_dir = run_spec(spec, str(root))
    return metrics, run_dir, root


def test_loss_falls_and_beats_the_majority_tag(trained):
    metrics, run_dir, root = trained
    history = read_jsonl(os.path.join(run_dir, "metrics.jsonl"))
    losses = [h["train/loss"] for h in history if "train/loss" in h]
    assert losses[-1] < 0.5 * losses[0], losses
    gold = [line.split("\t")[1].strip() for line in open(root / "dev.txt") if line.strip()]
    majority = max(gold.count(t) for t in set(gold)) / len(gold)
    assert metrics["validation/accuracy"] > majority + 0.15, (metrics, majority)
    assert metrics["validation/f1"] > 0.6
    assert set(metrics["validation/by_type"]) == {"per", "loc", "org"}


def test_predictions_hold_one_tag_per_word_even_for_long_sentences(trained):
    _, run_dir, root = trained
    preds = read_jsonl(os.path.join(run_dir, "predictions.jsonl"))
    sentences = open(root / "dev.txt").read().strip().split("\n\n")
    assert len(preds) == len(sentences) == 60
    assert max(len(p["words"]) for p in preds) >= 40   # several 16-token windows each
    for pred, block in zip(preds, sentences):
        words = [line.split("\t")[0] for line in block.splitlines()]
        assert pred["words"] == words
        assert len(pred["tags"]) == len(words) == len(pred["gold"]) == len(pred["scores"])
        for ent in pred["entities"]:
            assert pred["text"][ent["start"]:ent["end"]] == ent["text"]
            assert ent["text"] == " ".join(words[ent["words"][0]:ent["words"][1]])


def test_predict_text_and_conll_files(trained, tmp_path):
    _, run_dir, root = trained
    src = tmp_path / "in.txt"
    src.write_text("alice  went to paris\n" + " ".join(["bob works at acme corp in london"] * 8)
                   + "\nit was \u200b bobby\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["predict", run_dir, str(src), "--format", "text",
                                      "-o", str(tmp_path / "out.jsonl")])
    assert result.exit_code == 0, result.output
    out = read_jsonl(tmp_path / "out.jsonl")
    assert [len(p["tags"]) for p in out] == [4, 56, 4]
    assert out[0]["entities"][:1] == [{"type": "per", "start": 0, "end": 5, "text": "alice", "words": [0, 1]}]
    assert {"type": "loc", "start": 15, "end": 20, "text": "paris", "words": [3, 4]} in out[0]["entities"]
    assert out[2]["no_tokens"] == [2] and out[2]["tags"][3] == "B-per"
    # CoNLL input (the task's default format for .txt); gold tags in it are ignored
    conll = CliRunner().invoke(cli, ["predict", run_dir, str(root / "dev.txt")])
    assert conll.exit_code == 0, conll.output
    lines = [json.loads(x) for x in conll.stdout.splitlines()]
    assert len(lines) == 60 and all(len(p["tags"]) == len(p["words"]) for p in lines)


def test_best_loads_as_hf_token_classifier_and_agrees(trained, tmp_path):
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    _, run_dir, _ = trained
    best = os.path.join(run_dir, "best")
    model = AutoModelForTokenClassification.from_pretrained(best).eval()
    tok = AutoTokenizer.from_pretrained(best)
    words = ["alice", "went", "to", "london", "and", "acme", "corp"]
    enc = tok([words], is_split_into_words=True, return_tensors="pt")
    with torch.inference_mode():
        logits = model(**enc).logits[0]
    first = {}
    for pos, w in enumerate(enc.word_ids(0)):
        if w is not None and w not in first:
            first[w] = model.config.id2label[int(logits[pos].argmax())]
    (tmp_path / "in.jsonl").write_text(json.dumps({"tokens": words}) + "\n")
    result = CliRunner().invoke(cli, ["predict", run_dir, str(tmp_path / "in.jsonl")])
    assert result.exit_code == 0, result.output
    ours = json.loads(result.stdout)["tags"]   # mean pooling == first for one-subtoken words
    assert ours == [first[i] for i in range(len(words))]
    assert ours[0] == "B-per" and ours[3] == "B-loc"


def test_validate_reports_invalid_bio_and_bad_files(trained, tmp_path):
    _, run_dir, root = trained
    bad = tmp_path / "bad.txt"
    bad.write_text("alice\tB-per\nwent\tO\n\nparis\tO\nacme\tI-org\n", encoding="utf-8")
    spec = tmp_path / "s.yaml"
    spec.write_text(f"task: token_classification\nencoder: {{model: {root / 'encoder'}}}\n"
                    f"data: {{format: conll, train: {root / 'train.txt'}, validation: {bad}}}\n")
    result = CliRunner().invoke(cli, ["validate", str(spec)])
    assert result.exit_code == 0, result.output
    assert f"{bad}:4: invalid IOB2: word 2 'I-org' after 'O'" in result.output
    bad.write_text("alice\tB-per\nwent\tO\tX\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["validate", str(spec)])
    assert result.exit_code == 2
    assert f"{bad}:2: 3 columns, expected 2 (as on line 1)" in result.output
