"""SQuAD metrics on worked examples, the SQuAD JSON reader, and QA record checks."""

import json

import pytest

from taskbert import DataError
from taskbert.plugins import registries
from taskbert_plugins.qa import ExtractiveQA, QAOptions
from taskbert_plugins.qa.squad import (exact_match, f1, f1_score, normalize_answer, read_squad,
                                    squad_metrics)


# ------------------------------------------------------------------ metrics
def test_normalisation():
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert normalize_answer("  an Apple, a day ") == "apple day"
    assert normalize_answer("Theatre") == "theatre"       # 'the' only as a word


def test_f1_worked_example():
    # gold words: cat sat on mat; predicted: cat on mat -> 3 shared,
    # precision 3/3, recall 3/4, F1 = 2 * 1 * 0.75 / 1.75 = 6/7
    assert f1_score("the cat sat on the mat", "a cat on a mat") == pytest.approx(6 / 7)
    assert f1_score("paris", "rome") == 0.0
    assert f1_score("", "") == 1.0 and f1_score("", "x") == 0.0
    # repeated words count as often as both sides have them
    assert f1_score("new new york", "new york york") == pytest.approx(2 / 3)


def test_best_over_golds_and_unanswerable():
    golds = [["Paris", "the city of Paris"], ["the cat sat"], [], [], ["the"]]
    preds = ["paris.", "cat", "", "something", ""]
    # EM: 1, 0, 1 (both empty), 0, 1 (gold 'the' normalises to nothing: counts as no answer)
    assert exact_match(golds, preds) == pytest.approx(3 / 5)
    # F1: 1, 2*(1*0.5)/1.5 = 2/3, 1, 0, 1
    assert f1(golds, preds) == pytest.approx((1 + 2 / 3 + 1 + 0 + 1) / 5)


def test_has_ans_no_ans_split():
    golds = [["paris"], [], ["rome"], []]
    preds = ["paris", "", "milan", "oslo"]
    m = squad_metrics(golds, preds)
    assert m["exact_match"] == 0.5 and m["has_ans_exact_match"] == 0.5
    assert m["no_ans_exact_match"] == 0.5 and m["no_ans_f1"] == 0.5
    assert (m["has_ans_total"], m["no_ans_total"]) == (2, 2)
    assert set(squad_metrics([["a"]], ["a"])) == {"exact_match", "f1"}   # v1.1: no split


def test_metrics_registered():
    metrics = registries().metrics
    assert metrics.get("squad_f1")([["x y"]], ["x"]) == pytest.approx(2 / 3)
    assert metrics.get("squad_exact_match")([["X!"]], ["x"]) == 1.0
    assert registries().readers.get("squad") is read_squad


# ------------------------------------------------------------------- reader
SQUAD = {"version": "v2.0", "data": [{"title": "T", "paragraphs": [
    {"context": "Paris is in France.", "qas": [
        {"id": "a", "question": "Where is Paris?", "answers": [
            {"text": "France", "answer_start": 12}, {"text": "in France", "answer_start": 9}]},
        {"id": "b", "question": "Where is Rome?", "is_impossible": True, "answers": [],
         "plausible_answers": [{"text": "France", "answer_start": 12}]}]},
    {"context": "Oslo is cold.", "qas": [
        {"id": "c", "question": "What is cold?", "answers": [{"text": "Oslo", "answer_start": 0}]}]}]}]}


def test_squad_reader_v1_and_v2(tmp_path):
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(SQUAD))
    records = list(read_squad(str(path), {}))
    assert [loc for loc, _ in records] == ["data[0].paragraphs[0].qas[0]", "data[0].paragraphs[0].qas[1]",
                                           "data[0].paragraphs[1].qas[0]"]
    first = records[0][1]
    assert first["answers"] == {"text": ["France", "in France"], "answer_start": [12, 9]}
    assert records[1][1]["answers"] == {"text": [], "answer_start": []}   # plausible answers are not gold
    task = ExtractiveQA(QAOptions())
    examples = [task.example_from_record(r, f"{path}:{loc}") for loc, r in records]
    task.setup({"validation": examples})
    assert task.allow_no_answer is True
    assert task.gold(examples[0]) == ["France", "in France"] and task.gold(examples[1]) == []


def test_squad_reader_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": [\n{"paragraphs": [}\n]}')
    with pytest.raises(DataError, match=r"bad.json:2: invalid JSON"):
        list(read_squad(str(bad), {}))
    bad.write_text('[{"question": "q"}]')
    with pytest.raises(DataError, match=r"not the SQuAD layout"):
        list(read_squad(str(bad), {}))
    bad.write_text(json.dumps({"data": [{"paragraphs": [{"context": "x", "qas": [
        {"id": "z", "question": "q", "answers": "x"}]}]}]}))
    with pytest.raises(DataError, match=r"data\[0\].paragraphs\[0\].qas\[0\]: \"answers\" must be a list"):
        list(read_squad(str(bad), {}))
    bad.write_text(json.dumps({"data": [{"paragraphs": [{"qas": [{"id": "z", "question": "q"}]}]}]}))
    with pytest.raises(DataError, match=r"bad.json:data\[0\].paragraphs\[0\]: no 'context' \(a SQuAD "
                                        r"paragraph needs a context string\)$"):
        list(read_squad(str(bad), {}))
    bad.write_text(json.dumps({"data": [{"paragraphs": [{"context": "x", "qas": [{"id": "z"}]}]}]}))
    with pytest.raises(DataError, match=r"bad.json:data\[0\].paragraphs\[0\].qas\[0\]: no 'question'"):
        list(read_squad(str(bad), {}))
    bad.write_text('{"data": [{"paragraphs": [{"context": "x", "context": "y", "qas": []}]}]}')
    with pytest.raises(DataError, match=r"bad.json: key 'context' appears twice in one JSON object"):
        list(read_squad(str(bad), {}))


# ------------------------------------------------------------ record checks
def record(**kw):
    base = {"id": "q1", "question": "Where?", "context": "Paris is in France.",
            "answers": {"text": ["France"], "answer_start": [12]}}
    base.update(kw)
    return base


def test_record_forms_and_errors():
    task = ExtractiveQA(QAOptions())
    listed = task.example_from_record(record(answers=[{"text": "France", "answer_start": 12}]), "f:1")
    assert listed["answers"] == [{"text": "France", "start": 12}] and listed["mismatches"] == []
    with pytest.raises(DataError, match=r"f:2: question 'q1': answer_start 30 of 'France' is not an offset"):
        task.example_from_record(record(answers={"text": ["France"], "answer_start": [30]}), "f:2")
    with pytest.raises(DataError, match=r"f:3: question 'q1': answer text '' must be non-empty"):
        task.example_from_record(record(answers={"text": [""], "answer_start": [0]}), "f:3")
    with pytest.raises(DataError, match=r"f:4: missing field 'answers'.*answer_start"):
        task.example_from_record({"question": "q", "context": "c"}, "f:4")
    assert task.example_from_record({"question": "q", "context": "c"}, "f:5", labelled=False)["answers"] is None
    with pytest.raises(DataError, match=r"f:6: field 'passage' is missing.*task_options.context_field"):
        ExtractiveQA(QAOptions(context_field="passage")).example_from_record(record(), "f:6")
    with pytest.raises(DataError, match=r"lists of equal length"):
        task.example_from_record(record(answers={"text": ["France"], "answer_start": []}), "f:7")


def test_mismatch_is_kept_and_listed():
    task = ExtractiveQA(QAOptions())
    ex = task.example_from_record(record(answers={"text": ["France"], "answer_start": [11]}), "f:1")
    assert ex["answers"] == [{"text": "France", "start": 11}]
    (warning,) = task.check([ex], "train", "f")
    assert warning.startswith("f:1: question 'q1': answer 'France' does not match the passage at "
                              "answer_start 11 (' Franc')")
    many = [dict(ex, id=f"q{i}") for i in range(105)]
    lines = task.check(many, "train", "f")
    assert len(lines) == 101 and lines[-1] == "f: 5 more answers do not match the passage (105 in all)"
    strict = ExtractiveQA(QAOptions(answer_mismatch="error"))
    with pytest.raises(DataError, match=r"f:1: question 'q1': answer 'France' does not match"):
        strict.example_from_record(record(answers={"text": ["France"], "answer_start": [11]}), "f:1")


def test_example_spec_is_valid(tmp_path):
    """task_specs/qa-squad-example.yaml parses and validates on a SQuAD v2.0 file."""
    import os

    from click.testing import CliRunner

    from taskbert.cli import cli
    from taskbert.config.spec import load_spec
    from taskbert.testing import make_tiny_encoder

    path = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "task_specs", "qa-squad-example.yaml")
    spec = load_spec(path)
    assert spec.options.window_overlap_tokens == 128 and spec.encoder.max_length == 384
    (tmp_path / "dev.json").write_text(json.dumps(SQUAD))
    encoder = make_tiny_encoder(str(tmp_path / "enc"), "paris is in france where rome oslo cold what".split(),
                                max_positions=512)
    result = CliRunner().invoke(cli, ["validate", path, "--set", f"encoder.model={encoder}",
                                      "--set", f"data.train={tmp_path / 'dev.json'}",
                                      "--set", f"data.validation={tmp_path / 'dev.json'}"])
    assert result.exit_code == 0, result.output
    assert "examples: train 3, validation 3" in result.stdout


def test_squad_is_impossible_must_be_a_boolean_and_a_bom_is_read(tmp_path):
    from taskbert import DataError
    from taskbert_plugins.qa.squad import read_squad

    doc = {"data": [{"paragraphs": [{"context": "Paris is in France.", "qas": [
        {"id": "a", "question": "Where?", "is_impossible": "false",
         "answers": [{"text": "France", "answer_start": 12}]}]}]}]}
    path = tmp_path / "sq.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r'qas\[0\]: "is_impossible" must be true or false, got \'false\''):
        list(read_squad(str(path), {}))
    doc["data"][0]["paragraphs"][0]["qas"][0]["is_impossible"] = False
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(doc).encode())   # a UTF-8 BOM, as other readers accept
    ((_, record),) = list(read_squad(str(path), {}))
    assert record["answers"], record   # kept: is_impossible is false
