"""Empty or whitespace-only texts are bad input for the text tasks (sentence_classification,
sentence_pair): one line naming file:line and the field, exit code 2 from validate."""

import pytest

from taskbert import DataError
from taskbert_plugins.classification import ClassificationOptions, SentenceClassification
from taskbert_plugins.pairs import PairOptions, SentencePair
from test_labels import assert_one_line_error, validate, write_jsonl  # the same spec and checks


@pytest.mark.parametrize("blank", ["", "   ", "\t"])
def test_pair_csv_empty_text_b_is_an_error(tmp_path, tiny_encoder, blank):
    # 'alpha beta,,1.0' used to validate "ok" and train as [CLS] a [SEP] [SEP]
    (tmp_path / "train.csv").write_text(f"left,right,score\nalpha beta,gamma,0.5\nalpha beta,{blank},1.0\n")
    result = validate(tmp_path, tiny_encoder, "sentence_pair", "train.csv",
                      {"text_a_field": "left", "text_b_field": "right", "label_field": "score",
                       "objective": "regression"})
    assert_one_line_error(result, "train.csv:3", "field 'right'", repr(blank), "empty")


def test_pair_jsonl_empty_hypothesis_is_an_error(tmp_path, tiny_encoder):
    name = write_jsonl(tmp_path / "train.jsonl", [
        {"premise": "a b", "hyp": "c d", "gold": "entailment"},
        {"premise": "a b", "hyp": "e", "gold": "neutral"},
        {"premise": "a b", "hyp": "", "gold": "neutral"}])
    result = validate(tmp_path, tiny_encoder, "sentence_pair", name,
                      {"text_a_field": "premise", "text_b_field": "hyp", "label_field": "gold"})
    assert_one_line_error(result, "train.jsonl:3", "field 'hyp'", "''")


def test_pair_blank_premise_is_an_error(tmp_path, tiny_encoder):
    name = write_jsonl(tmp_path / "train.jsonl", [
        {"sentence1": " \n ", "sentence2": "c d", "label": "x"},
        {"sentence1": "a b", "sentence2": "e", "label": "y"}])
    result = validate(tmp_path, tiny_encoder, "sentence_pair", name, {})
    assert_one_line_error(result, "train.jsonl:1", "field 'sentence1'")


@pytest.mark.parametrize("blank", ["", "  "])
def test_classification_blank_text_is_an_error(tmp_path, tiny_encoder, blank):
    name = write_jsonl(tmp_path / "train.jsonl", [
        {"text": "good film", "label": "pos"}, {"text": blank, "label": "neg"},
        {"text": "bad film", "label": "neg"}])
    result = validate(tmp_path, tiny_encoder, "sentence_classification", name, {})
    assert_one_line_error(result, "train.jsonl:2", "field 'text'", repr(blank), "empty")


def test_unlabelled_inputs_are_checked_too():
    # taskbert predict / serve read their inputs with labelled=False: same rule
    pair = SentencePair(PairOptions(text_b_field="hyp"))
    with pytest.raises(DataError, match=r"^in.jsonl:4: field 'hyp' is empty"):
        pair.example_from_record({"sentence1": "a", "hyp": ""}, "in.jsonl:4", labelled=False)
    # a .txt predict line 'text a<TAB>' gives an empty text b
    with pytest.raises(DataError, match=r"^in.txt:2: field 'hyp' is empty"):
        pair.example_from_record(pair.record_from_text("a b\t "), "in.txt:2", labelled=False)
    cls = SentenceClassification(ClassificationOptions(text_field="body"))
    with pytest.raises(DataError, match=r"^inputs\[0\]: field 'body' is empty"):
        cls.example_from_record({"body": " "}, "inputs[0]", labelled=False)
    # text with content still passes, surrounding spaces kept as given
    assert pair.example_from_record({"sentence1": " a", "hyp": "b "}, "p:1", labelled=False)["text_b"] == "b "
    assert cls.example_from_record({"body": "x"}, "p:1", labelled=False)["text"] == "x"


def test_missing_and_null_texts_keep_their_messages():
    pair = SentencePair(PairOptions(text_b_field="hyp"))
    with pytest.raises(DataError, match=r"missing text field 'hyp'.*\(set task_options.text_b_field\)"):
        pair.example_from_record({"sentence1": "a", "label": "x"}, "f:1")
    with pytest.raises(DataError, match=r"field 'hyp' must be text, got None"):
        pair.example_from_record({"sentence1": "a", "hyp": None, "label": "x"}, "f:1")
    cls = SentenceClassification()
    with pytest.raises(DataError, match=r"missing text field 'text'.*\(set task_options.text_field\)"):
        cls.example_from_record({"label": "x"}, "f:1")


@pytest.mark.parametrize("text", ["\u200b\u200c\u200d", "\x00\x00", " \u2028\t"])
def test_text_of_only_invisible_characters_is_empty(text):
    """Zero-width, NUL and other control characters tokenize to nothing: a bare [CLS] [SEP]."""
    task = SentenceClassification(ClassificationOptions())
    with pytest.raises(DataError, match=r"f\.jsonl:1: field 'text' is empty"):
        task.example_from_record({"text": text, "label": "pos"}, "f.jsonl:1")
    assert task.example_from_record({"text": "a\u200bb", "label": "pos"}, "f.jsonl:2")["text"] == "a\u200bb"
