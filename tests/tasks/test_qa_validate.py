"""``taskbert validate`` catches what ``taskbert run`` would reject for extractive_qa:
a window overlap that leaves no step between windows (before any weights load), and SQuAD
files whose paragraphs or questions lack their text (one line, no misleading option hint)."""

import json
import re
import os

import pytest
from click.testing import CliRunner

from taskbert.cli import cli

SQUAD = {"version": "v2.0", "data": [{"title": "T", "paragraphs": [
    {"context": "the cat sat on the mat .", "qas": [
        {"id": "a", "question": "where sat the cat ?", "answers": [{"text": "mat", "answer_start": 19}]}]},
    {"context": "a dog ran under a tree .", "qas": [
        {"id": "b", "question": "what ran ?", "answers": [{"text": "dog", "answer_start": 2}]}]}]}]}


def write_spec(folder, encoder, max_length, options=None, data="train.json", extra=""):
    """A QA spec in ``folder`` reading ``data`` for train and validation; returns its path."""
    spec = folder / "qa.yaml"
    text = (f"task: extractive_qa\nencoder: {{model: {encoder}, max_length: {max_length}}}\n"
            f"data: {{train: {data}, validation: {data}}}\noutput: {folder / 'run'}\n{extra}")
    if options is not None:
        text += f"task_options: {json.dumps(options)}\n"
    spec.write_text(text)
    return str(spec)


def write_squad(path, doc=SQUAD):
    path.write_text(json.dumps(doc))
    return str(path)


def invoke(*args):
    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


# ------------------------------------------------------- window overlap
def test_validate_rejects_overlap_that_leaves_no_step(tiny_encoder, tmp_path):
    write_squad(tmp_path / "train.json")
    spec = write_spec(tmp_path, tiny_encoder, 64, {"window_overlap_tokens": 16})
    result = invoke("validate", spec)
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {spec}: task_options.window_overlap_tokens: 16 leaves no step "
                           f"between windows: encoder.max_length 64 - max_question_tokens 64 - "
                           f"3 special tokens = -3 passage tokens per window"), line
    assert "ok:" not in result.stdout


@pytest.mark.parametrize("max_length, ok", [(99, False), (100, True)])
def test_default_overlap_needs_max_length_over_99(tiny_encoder, tmp_path, max_length, ok):
    # default overlap 32, max_question_tokens 64: room = max_length - 64 - 3 must exceed 32
    write_squad(tmp_path / "train.json")
    result = invoke("validate", write_spec(tmp_path, tiny_encoder, max_length))
    if ok:
        assert result.exit_code == 0, result.output
        assert "examples: train 2, validation 2" in result.stdout
    else:
        assert result.exit_code == 2, result.output
        assert "task_options.window_overlap_tokens: 32 leaves no step" in result.stderr
        assert "= 32 passage tokens per window" in result.stderr


def test_run_rejects_overlap_before_weights_load(tiny_encoder, tmp_path, monkeypatch):
    import taskbert.encoder

    def no_weights(*args, **kwargs):
        raise AssertionError("model weights loaded before the overlap was checked")

    monkeypatch.setattr(taskbert.encoder, "load_model", no_weights)
    write_squad(tmp_path / "train.json")
    spec = write_spec(tmp_path, tiny_encoder, 64, {"window_overlap_tokens": 16})
    result = invoke("run", spec)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {spec}: task_options.window_overlap_tokens: 16 leaves no step")
    assert not os.path.exists(tmp_path / "run")


def test_tokenizer_loaded_only_when_a_check_uses_it(tiny_encoder, tmp_path, monkeypatch):
    import taskbert.encoder

    def no_tokenizer(*args, **kwargs):
        raise AssertionError("validate loaded a tokenizer that no check of the task uses")

    monkeypatch.setattr(taskbert.encoder, "load_tokenizer", no_tokenizer)
    (tmp_path / "train.jsonl").write_text('{"text": "the cat", "label": "a"}\n'
                                          '{"text": "a dog", "label": "b"}\n')
    spec = tmp_path / "cls.yaml"
    spec.write_text(f"task: sentence_classification\nencoder: {{model: {tiny_encoder}, max_length: 32}}\n"
                    f"data: {{train: train.jsonl}}\n")
    result = invoke("validate", str(spec))
    assert result.exit_code == 0, result.output
    # with windows the same task does use the tokenizer: validate loads it and checks the overlap
    monkeypatch.undo()
    spec.write_text(spec.read_text() + "task_options: {long_inputs: windows, window_overlap: 40}\n")
    result = invoke("validate", str(spec))
    assert result.exit_code == 2 and "task_options.window_overlap: 40 must be smaller" in result.stderr, result.output


# ------------------------------------------------------- SQuAD fields
@pytest.mark.parametrize("where, key, value, expected", [
    ("paragraph", "context", None,
     "data[0].paragraphs[1]: no 'context' (a SQuAD paragraph needs a context string)"),
    ("paragraph", "context", 7,
     "data[0].paragraphs[1]: 'context' is 7, not text (a SQuAD paragraph needs a context string)"),
    ("question", "question", None,
     "data[0].paragraphs[1].qas[0]: no 'question' (a SQuAD question needs a question string)"),
    ("question", "question", ["what"],
     "data[0].paragraphs[1].qas[0]: 'question' is ['what'], not text (a SQuAD question needs a "
     "question string)"),
])
def test_squad_missing_text_is_one_clear_line(tiny_encoder, tmp_path, where, key, value, expected):
    doc = json.loads(json.dumps(SQUAD))
    para = doc["data"][0]["paragraphs"][1]
    target = para if where == "paragraph" else para["qas"][0]
    if value is None:
        del target[key]
    else:
        target[key] = value
    data = write_squad(tmp_path / "noctx.json", doc)
    result = invoke("validate", write_spec(tmp_path, tiny_encoder, 128, data="noctx.json"))
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [f"error: {data}:{expected}"]
    assert "task_options" not in result.stderr and "record has" not in result.stderr


def test_jsonl_missing_context_still_names_the_option(tiny_encoder, tmp_path):
    (tmp_path / "train.jsonl").write_text(json.dumps(
        {"id": "q1", "question": "what ran ?", "answers": {"text": [], "answer_start": []}}) + "\n")
    result = invoke("validate", write_spec(tmp_path, tiny_encoder, 128, data="train.jsonl"))
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.splitlines()
    assert "train.jsonl:1: field 'context' is missing; record has: id, question, answers " \
           "(set task_options.context_field)" in line


@pytest.mark.parametrize("record, expected", [
    ({"question": "where ?", "context": ""}, "field 'context' is empty (got ''); a context needs"),
    ({"question": "  ", "context": "the cat sat"}, "field 'question' is empty (got '  '); a question needs"),
])
def test_blank_question_or_passage_is_refused(record, expected):
    """As for the text tasks: an empty passage used to get an empty answer with probability 1."""
    from taskbert import DataError
    from taskbert_plugins.qa import ExtractiveQA

    with pytest.raises(DataError, match=r"in\.jsonl:1: " + re.escape(expected)):
        ExtractiveQA().example_from_record(record, "in.jsonl:1", labelled=False)


def test_plain_text_lines_are_refused_with_the_formats_that_work(tmp_path):
    from taskbert import DataError
    from taskbert.cli.runs import read_inputs
    from taskbert_plugins.qa import ExtractiveQA

    text = tmp_path / "qa.txt"
    text.write_text("where is the cat ?\n")
    with pytest.raises(DataError, match=r"qa\.txt:1: extractive_qa: a question needs its passage.*\.jsonl"):
        read_inputs(str(text), ExtractiveQA(), "text")


def test_a_prediction_always_has_an_id():
    from taskbert_plugins.qa import ExtractiveQA

    task = ExtractiveQA()
    task.allow_no_answer = False
    ex = task.example_from_record({"question": "what ?", "context": "a b"}, "x:1", labelled=False)
    rows = [{"example_index": 0, "passage_start": 1, "offsets": [(0, 1), (2, 3)]}]
    logits = [0.0, 5.0, 1.0, 0.0]   # what collect hands decode: per-position floats
    (pred,) = task.decode([(logits, logits)], rows, [ex])
    assert pred["id"] is None and pred["text"] in ("a", "b", "a b")
