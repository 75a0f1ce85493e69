"""``sentence_pair`` without training: encoding, truncation, records, labels, options."""

import json

import pytest
from click.testing import CliRunner

from taskbert import DataError, Skip, SpecError
from taskbert.cli import cli
from taskbert.testing import check_task_class, make_tiny_encoder, make_tokenizer
from taskbert_plugins.pairs import PairOptions, SentencePair

WORDS = "a b c d e f g h i j k l m n o p q r s t".split()


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer(WORDS)


def example(a, b, label="x"):
    return {"text_a": a, "text_b": b, "label": label, "where": "t:1"}


def test_task_contract():
    check_task_class(SentencePair)


def test_segments_and_token_types(tokenizer):
    task = SentencePair()
    task.labels = ["x", "y"]
    (row,) = task.encode_all([example("a b c", "d e", "y")], tokenizer, 32)
    assert tokenizer.convert_ids_to_tokens(row["input_ids"]) == \
        ["[CLS]", "a", "b", "c", "[SEP]", "d", "e", "[SEP]"]
    assert row["token_type_ids"] == [0, 0, 0, 0, 0, 1, 1, 1]
    assert row["label"] == 1


def test_longer_side_is_truncated_first(tokenizer):
    task = SentencePair()
    task.labels = ["x"]
    long_a, short_b = " ".join(WORDS[:15]), "p q r"
    (row,) = task.encode_all([example(long_a, short_b)], tokenizer, 12)
    tokens = tokenizer.convert_ids_to_tokens(row["input_ids"])
    # 12 = 3 special + 6 of a + all 3 of b: only the longer text lost tokens
    assert tokens == ["[CLS]", "a", "b", "c", "d", "e", "f", "[SEP]", "p", "q", "r", "[SEP]"]
    (row,) = task.encode_all([example(short_b, long_a)], tokenizer, 12)
    assert tokenizer.convert_ids_to_tokens(row["input_ids"])[1:5] == ["p", "q", "r", "[SEP]"]
    # both long: both are cut, to equal lengths
    (row,) = task.encode_all([example(long_a, long_a)], tokenizer, 13)
    assert row["token_type_ids"].count(0) == 1 + 5 + 1 and row["token_type_ids"].count(1) == 5 + 1


def test_records_and_dropped_labels():
    task = SentencePair(PairOptions(drop_labels=("-",), label_field="gold_label"))
    rec = {"sentence1": "a b", "sentence2": "c", "gold_label": "entailment"}
    assert task.example_from_record(rec, "f.jsonl:1")["text_b"] == "c"
    skip = Skip("whose label is in task_options.drop_labels")   # the core counts and reports it
    assert task.example_from_record(dict(rec, gold_label="-"), "f.jsonl:2") == skip
    assert task.example_from_record(dict(rec, gold_label="-"), "f.jsonl:3") == skip
    assert task.check([], "train", "f.jsonl") == []
    with pytest.raises(DataError, match=r"f.jsonl:4: missing text field 'sentence2'.*task_options.text_b_field"):
        task.example_from_record({"sentence1": "a", "gold_label": "x"}, "f.jsonl:4")
    with pytest.raises(DataError, match=r"f.jsonl:5: missing label field 'gold_label'"):
        task.example_from_record({"sentence1": "a", "sentence2": "b"}, "f.jsonl:5")
    assert task.example_from_record({"sentence1": "a", "sentence2": "b"}, "p:1", labelled=False)["label"] is None
    # an input to predict is predicted whatever its label says: SNLI's test file has 176 '-'
    # rows, and dropping them shifted every later prediction off its input line
    unlabelled = task.example_from_record(dict(rec, gold_label="-"), "p:2", labelled=False)
    assert unlabelled is not None and unlabelled["label"] is None
    assert task.record_from_text("a b\tc d") == {"sentence1": "a b", "sentence2": "c d"}
    with pytest.raises(DataError, match="exactly one tab between the two texts, found none"):
        task.record_from_text("no tab here")


def test_text_line_with_more_than_one_tab_is_an_error():
    # 'a\tb\tc' used to give text_b 'b\tc' without a word
    task = SentencePair()
    with pytest.raises(DataError, match=r"^sentence_pair: a text input line needs exactly one tab "
                                        r"between the two texts, found 2 in 'a\\tb\\tc'"):
        task.record_from_text("a\tb\tc")
    with pytest.raises(DataError, match="found 3"):
        task.record_from_text("a\t\tb\t")
    assert task.record_from_text("a b\tc d") == {"sentence1": "a b", "sentence2": "c d"}


def test_regression_scores():
    task = SentencePair(PairOptions(objective="regression", label_field="score", drop_labels=("n/a",)))
    assert task.default_metric == "pearson" and task.metric_names == ("pearson", "spearman")
    rec = {"sentence1": "a", "sentence2": "b", "score": "3.5"}
    assert task.example_from_record(rec, "f.tsv:2")["label"] == 3.5
    assert task.example_from_record(dict(rec, score="n/a"), "f.tsv:3") == Skip("whose label is in task_options.drop_labels")
    with pytest.raises(DataError, match=r"f.tsv:4: score 'high' in field 'score' is not a finite number"):
        task.example_from_record(dict(rec, score="high"), "f.tsv:4")
    with pytest.raises(DataError, match="all training scores are equal"):
        task.setup({"train": [example("a", "b", 1.0), example("c", "d", 1.0)]})
    preds = [{"score": 0.1}, {"score": 0.1}]
    assert task.score(preds, [example("a", "b", 0.0), example("c", "d", 1.0)]) == \
        {"pearson": 0.0, "spearman": 0.0}    # constant prediction: no correlation, not NaN


def test_options_are_checked():
    from taskbert.config.spec import spec_from_dict

    base = {"task": "sentence_pair", "data": {"train": "x.jsonl"}}
    with pytest.raises(SpecError, match=r"task_options.objective: 'ranking' is not allowed"):
        spec_from_dict({**base, "task_options": {"objective": "ranking"}})
    with pytest.raises(SpecError, match=r"text_b_field: 'text' is the same field as text_a_field"):
        spec_from_dict({**base, "task_options": {"text_a_field": "text", "text_b_field": "text"}})
    with pytest.raises(SpecError, match=r"unknown key 'task_options.text_field'"):
        spec_from_dict({**base, "task_options": {"text_field": "t"}})


def test_validate_counts_dropped_snli_rows(tmp_path):
    encoder = make_tiny_encoder(str(tmp_path / "enc"), WORDS)
    rows = [{"sentence1": "a b", "sentence2": "c", "gold_label": lab, "pairID": str(i)}
            for i, lab in enumerate(["entailment", "-", "neutral", "contradiction", "-"])]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "dev.tsv").write_text("sentence1\tsentence2\tgold_label\na\tb\tneutral\nc\td\t-\n")
    (tmp_path / "s.yaml").write_text(
        f"task: sentence_pair\nencoder: {{model: {encoder}, max_length: 16}}\n"
        "data: {train: train.jsonl, validation: dev.tsv}\n"
        "task_options: {label_field: gold_label, drop_labels: ['-']}\n")
    result = CliRunner().invoke(cli, ["validate", str(tmp_path / "s.yaml")])
    assert result.exit_code == 0, result.output
    assert "train.jsonl: skipped 2 records" in result.stderr and "dev.tsv: skipped 1 records" in result.stderr
    assert "examples: train 3, validation 1" in result.stdout


@pytest.mark.parametrize("line", ["no tab here", "a\tb\tc"])
def test_serve_answers_a_bad_pair_line_with_400(line):
    """A string input the task cannot split is the client's error (400), not the server's."""
    from taskbert.cli.serve import BadRequest, parse_inputs

    task = SentencePair(PairOptions())
    with pytest.raises(BadRequest) as info:
        parse_inputs({"inputs": ["first\tsecond", line]}, task, max_inputs=10)
    assert info.value.status == 400
    assert "inputs[1]: sentence_pair: a text input line needs exactly one tab" in str(info.value)
