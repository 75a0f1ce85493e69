"""End to end: a tiny encoder learns extractive QA on passages the test writes, including
answers that only a later window holds and unanswerable questions; validate reports
answers that do not match their passage; predict returns text, offsets and score."""

import json
import os
import random

import pytest
from click.testing import CliRunner

from taskbert.cli import cli
from taskbert.testing import check_task_class, make_tiny_encoder, run_spec

PEOPLE = "alice bob carol dave erin frank grace heidi".split()
CITIES = "paris london rome berlin madrid oslo vienna dublin".split()
FILLER = ("the cat sat on mat dog ran under tree a big small old new house garden "
          "and then it was red blue green park river bridge").split()
WORDS = PEOPLE + CITIES + FILLER + "who where does live lives in".split()
MAX_LENGTH = 48
OPTIONS = {"window_overlap_tokens": 8, "max_question_tokens": 8}


def make_record(rng, qid, late, answerable):
    """A passage of filler sentences with one fact 'PERSON lives in CITY .' (none when
    unanswerable), at the start or (``late``) at the end; a who- or where-question."""
    sentences = [" ".join(rng.choice(FILLER) for _ in range(rng.randint(4, 8))) + " ."
                 for _ in range(rng.randint(4, 9))]
    person, city = rng.choice(PEOPLE), rng.choice(CITIES)
    where_q = rng.random() < 0.5
    question = f"where does {person} live ?" if where_q else f"who lives in {city} ?"
    if answerable:
        sentences.insert(len(sentences) if late else rng.randint(0, 1), f"{person} lives in {city} .")
    context = " ".join(sentences)
    answers = {"text": [], "answer_start": []}
    if answerable:
        fact = context.index(f"{person} lives in {city} .")
        text, start = (city, fact + len(person) + len(" lives in ")) if where_q else (person, fact)
        answers = {"text": [text], "answer_start": [start]}
    return {"id": f"q{qid}", "question": question, "context": context, "answers": answers}


def write_qa(path, n, seed, unanswerable=0.2, late=0.5):
    """``n`` jsonl QA records; returns them."""
    rng = random.Random(seed)
    records = [make_record(rng, f"{seed}-{i}", rng.random() < late, rng.random() >= unanswerable)
               for i in range(n)]
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in records)
    return records


def write_squad(path, records):
    """The same records in the SQuAD v2.0 JSON layout (one paragraph per question)."""
    paragraphs = [{"context": r["context"], "qas": [{
        "id": r["id"], "question": r["question"], "is_impossible": not r["answers"]["text"],
        "answers": [{"text": t, "answer_start": s}
                    for t, s in zip(r["answers"]["text"], r["answers"]["answer_start"])]}]}
        for r in records]
    with open(path, "w", encoding="utf-8") as fh:
        json.dump({"version": "v2.0", "data": [{"title": "synthetic", "paragraphs": paragraphs}]}, fh)


@pytest.fixture(scope="module")
def qa_run(tmp_path_factory):
    """Train once: 600 questions (SQuAD JSON) for 6 epochs, 120 validation questions (jsonl)."""
    root = tmp_path_factory.mktemp("qa")
    encoder = make_tiny_encoder(str(root / "encoder"), WORDS, hidden=64)
    write_squad(root / "train.json", write_qa(root / "t.jsonl", 600, 1))
    dev = write_qa(root / "dev.jsonl", 120, 2)
    spec = {"task": "extractive_qa", "encoder": {"model": encoder, "max_length": MAX_LENGTH},
            "data": {"train": str(root / "train.json"), "validation": str(root / "dev.jsonl")},
            "task_options": OPTIONS,
            "train": {"epochs": 6, "batch_size": 16, "lr": 2.0e-3, "log_every": 10, "seed": 3,
                      "loggers": []},
            "output": str(root / "run")}
    metrics, run_dir = run_spec(spec, str(root / "spec"))
    return metrics, run_dir, dev, root


def read_jsonl(path):
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def windows(records, tokenizer_folder):
    """The feature rows (windows) of QA records, as the task encodes them."""
    from transformers import AutoTokenizer

    from taskbert_plugins.qa import ExtractiveQA, QAOptions

    task = ExtractiveQA(QAOptions(**OPTIONS))
    if isinstance(records, dict):
        records = [records]
    examples = [task.example_from_record(r, f"in:{i}", labelled=False) for i, r in enumerate(records)]
    return task.encode_all(examples, AutoTokenizer.from_pretrained(tokenizer_folder), MAX_LENGTH)


def later_window_only(records, tokenizer_folder):
    """Ids of answerable records whose answer the first window does not hold."""
    rows = windows(records, tokenizer_folder)
    first = {}
    for row in rows:
        first.setdefault(row["example_index"], row)
    return {records[i]["id"] for i, row in first.items()
            if records[i]["answers"]["text"] and row["start_position"] == 0}


def test_task_contract():
    from taskbert_plugins.qa import ExtractiveQA

    check_task_class(ExtractiveQA)


def test_loss_falls_and_answers_found_including_later_windows(qa_run):
    metrics, run_dir, dev, _ = qa_run
    history = read_jsonl(os.path.join(run_dir, "metrics.jsonl"))
    losses = [h["train/loss"] for h in history if "train/loss" in h]
    assert losses[-1] < 0.3 * losses[0], losses
    # chance for a span among ~40-90 passage tokens is about 1%
    assert metrics["validation/exact_match"] >= 0.85, metrics
    assert metrics["validation/has_ans_f1"] >= 0.85, metrics
    assert metrics["validation/no_ans_exact_match"] >= 0.85, metrics
    assert metrics["validation/no_ans_total"] + metrics["validation/has_ans_total"] == 120
    late = later_window_only(dev, os.path.join(run_dir, "best"))
    assert len(late) >= 25, len(late)
    preds = {p["id"]: p for p in read_jsonl(os.path.join(run_dir, "predictions.jsonl"))}
    gold = {r["id"]: r for r in dev}
    right = [i for i in late if preds[i]["text"] == gold[i]["answers"]["text"][0]]
    assert len(right) >= 0.85 * len(late), (len(right), len(late))
    for i in right:   # offsets point into the passage
        p = preds[i]
        assert gold[i]["context"][p["start"]:p["end"]] == p["text"]
        assert p["start"] == gold[i]["answers"]["answer_start"][0]


def test_predictions_file_has_gold_and_no_answers(qa_run):
    _, run_dir, dev, _ = qa_run
    preds = read_jsonl(os.path.join(run_dir, "predictions.jsonl"))
    assert len(preds) == len(dev) and preds[0]["split"] == "validation"
    empty = [p for p in preds if p["gold"] == []]
    assert empty and sum(p["text"] == "" and p["start"] is None for p in empty) >= 0.85 * len(empty)


def test_predict_cli_returns_text_offsets_score(qa_run, tmp_path):
    _, run_dir, _, _ = qa_run
    context = ("the dog ran under the big tree . then it was red . the cat sat on the mat . "
               "a small house and a garden . the old bridge was blue . the river was green "
               "and the park was big . grace lives in oslo .")
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"question": "where does grace live ?", "context": context}) + "\n" +
                   json.dumps({"id": "x", "question": "who lives in oslo ?", "context": context}) + "\n" +
                   json.dumps({"question": "who lives in rome ?", "context": "the cat sat on the mat ."}) + "\n")
    result = CliRunner().invoke(cli, ["predict", run_dir, str(src)])
    assert result.exit_code == 0, result.output
    out = [json.loads(x) for x in result.stdout.splitlines()]
    assert [p["text"] for p in out] == ["oslo", "grace", ""]
    assert out[1]["id"] == "x" and out[0]["id"] is None   # the same fields on every line
    assert context[out[0]["start"]:out[0]["end"]] == "oslo"
    assert out[0]["start"] == context.index("oslo")
    first, *later = windows({"question": "where does grace live ?", "context": context},
                            os.path.join(run_dir, "best"))
    assert later and out[0]["start"] >= first["offsets"][-1][1]   # only a later window holds it
    assert all(isinstance(p["score"], float) and 0 <= p["probability"] <= 1 for p in out)


def test_best_loads_in_plain_transformers(qa_run):
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    _, run_dir, _, _ = qa_run
    best = os.path.join(run_dir, "best")
    model = AutoModelForQuestionAnswering.from_pretrained(best).eval()
    tok = AutoTokenizer.from_pretrained(best)
    question, context = "who lives in paris ?", "the cat sat . bob lives in paris . a dog ran ."
    enc = tok(question, context, return_tensors="pt")
    with torch.inference_mode():
        out = model(**enc)
    passage = [i for i, s in enumerate(enc.sequence_ids(0)) if s == 1]
    start = max(passage, key=lambda i: out.start_logits[0, i])
    end = max(passage, key=lambda i: out.end_logits[0, i])
    assert tok.decode(enc["input_ids"][0, start:end + 1]) == "bob"


def test_validate_reports_mismatched_answers_by_id(tmp_path):
    encoder = make_tiny_encoder(str(tmp_path / "enc"), WORDS)
    records = write_qa(tmp_path / "train.jsonl", 20, 5, unanswerable=0.0)
    records[3]["answers"]["answer_start"][0] += 1        # offset points one character late
    records[7]["answers"]["text"][0] = "somewhere"       # text not at its offset
    with open(tmp_path / "train.jsonl", "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in records)
    spec = tmp_path / "qa.yaml"
    spec.write_text(f"task: extractive_qa\nencoder: {{model: {encoder}, max_length: {MAX_LENGTH}}}\n"
                    f"data: {{train: train.jsonl}}\ntask_options: {OPTIONS}\n")
    result = CliRunner().invoke(cli, ["validate", str(spec)])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2, result.stderr
    assert f"question {records[3]['id']!r}" in warnings[0] and "train.jsonl:4" in warnings[0]
    assert f"question {records[7]['id']!r}" in warnings[1] and "'somewhere'" in warnings[1]
    assert "ok:" in result.stdout and "train 20" in result.stdout   # kept, not dropped
    result = CliRunner().invoke(cli, ["validate", str(spec), "--set", "task_options.answer_mismatch=error"])
    assert result.exit_code == 2
    assert f"train.jsonl:4: question {records[3]['id']!r}: answer" in result.stderr
