"""Labels of sentence_classification and sentence_pair (TextLabelTask): what may be a label,
how a null or empty one is reported, and the order of integer labels (ids = their values)."""

import json

import pytest
from click.testing import CliRunner

from taskbert import Skip, SpecError
from taskbert.cli import cli
from taskbert.config.schema import build
from taskbert.testing import run_spec
from taskbert_plugins.classification import ClassificationOptions, SentenceClassification
from taskbert_plugins.pairs import PairOptions, SentencePair

ALLOWED = "must be a non-empty string, an integer or a boolean"


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path.name


def validate(tmp_path, encoder, task, train, options=None):
    (tmp_path / "s.yaml").write_text(
        f"task: {task}\nencoder: {{model: {encoder}, max_length: 16}}\n"
        f"data: {{train: {train}}}\ntask_options: {json.dumps(options or {})}\n")
    return CliRunner().invoke(cli, ["validate", str(tmp_path / "s.yaml")])


def assert_one_line_error(result, *parts):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]


def records(task, label, **extra):
    """Two records, the second with ``label``, for ``task``."""
    if task == "sentence_pair":
        return [{"sentence1": "good", "sentence2": "fine", "label": "a", **extra},
                {"sentence1": "bad", "sentence2": "poor", "label": label, **extra}]
    return [{"text": "good", "label": "a", **extra}, {"text": "bad", "label": label, **extra}]


TASKS = ["sentence_classification", "sentence_pair"]


# ----------------------------------------------------------------- bad labels in data
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("label, shown", [(["cooking"], "['cooking']"), ({"a": 1}, "{'a': 1}"),
                                          (float("nan"), "nan"), (0.5, "0.5")])
def test_non_scalar_or_fractional_label_is_an_error(tmp_path, tiny_encoder, task, label, shown):
    # used to validate ok and train a class "['cooking']", "{'a': 1}", "nan" or "0.5"
    train = write_jsonl(tmp_path / "train.jsonl", records(task, label))
    assert_one_line_error(validate(tmp_path, tiny_encoder, task, train),
                          "train.jsonl:2", "'label'", ALLOWED, f"got {shown}")


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("label", ["", "   "])
def test_empty_label_is_an_error(tmp_path, tiny_encoder, task, label):
    train = write_jsonl(tmp_path / "train.jsonl", records(task, label))
    assert_one_line_error(validate(tmp_path, tiny_encoder, task, train),
                          "train.jsonl:2", "field 'label' is empty", repr(label), "drop_labels")


def test_csv_empty_label_cell_is_an_error(tmp_path, tiny_encoder):
    (tmp_path / "train.csv").write_text("text,label\ngood,pos\nbad,\nfine,pos\n")
    assert_one_line_error(validate(tmp_path, tiny_encoder, "sentence_classification", "train.csv"),
                          "train.csv:3", "field 'label' is empty (got '')")


def test_csv_empty_label_cells_can_be_dropped(tmp_path, tiny_encoder):
    (tmp_path / "train.csv").write_text("text,label\ngood,pos\nbad,\nfine,neg\n")
    result = validate(tmp_path, tiny_encoder, "sentence_classification", "train.csv",
                      {"drop_labels": [""]})
    assert result.exit_code == 0, result.output
    assert "skipped 1 records" in result.output


@pytest.mark.parametrize("task", TASKS)
def test_null_label_says_null_not_missing(tmp_path, tiny_encoder, task):
    # used to say "missing label field 'label'; record has: text, label"
    train = write_jsonl(tmp_path / "train.jsonl", records(task, None))
    line = assert_one_line_error(validate(tmp_path, tiny_encoder, task, train),
                                 "train.jsonl:2", "field 'label' is null")
    assert "missing" not in line


def test_missing_label_keeps_its_message(tmp_path, tiny_encoder):
    train = write_jsonl(tmp_path / "train.jsonl", [{"text": "good", "label": "a"}, {"text": "bad"}])
    assert_one_line_error(validate(tmp_path, tiny_encoder, "sentence_classification", train),
                          "train.jsonl:2", "missing label field 'label'; record has: text")


@pytest.mark.parametrize("label", [None, "", ["x"]])
def test_unlabelled_inputs_need_no_label(label):
    task = SentenceClassification()
    assert task.example_from_record({"text": "a b"}, "in.jsonl:1", labelled=False)["label"] is None
    ex = task.example_from_record({"text": "a b", "label": label}, "in.jsonl:1", labelled=False)
    assert ex["label"] is None
    pair = SentencePair()
    ex = pair.example_from_record({"sentence1": "a", "sentence2": "b", "label": label}, "in:1",
                                  labelled=False)
    assert ex["label"] is None


def test_scalar_labels_become_names():
    task = SentenceClassification()
    got = [task.example_from_record({"text": "t", "label": v}, "f:1")["label"]
           for v in (3, 3.0, "3", True, False, -1, "pos")]
    assert got == ["3", "3", "3", "true", "false", "-1", "pos"]


def test_drop_labels_still_skip_before_checks():
    task = SentenceClassification(ClassificationOptions(drop_labels=("-", "nan")))
    skip = Skip("whose label is in task_options.drop_labels")
    assert task.example_from_record({"text": "t", "label": "-"}, "f.jsonl:1") == skip
    assert task.example_from_record({"text": "t", "label": float("nan")}, "f.jsonl:2") == skip


def test_skipped_records_are_counted_per_file_and_reason(tmp_path):
    """The core counts what a task skips (``taskbert.Skip``) and says it once per file and reason."""
    from taskbert import registries
    from taskbert.data.splits import read_examples

    path = tmp_path / "f.jsonl"
    path.write_text("".join(f'{{"text": "t{i}", "label": "{lab}"}}\n' for i, lab in enumerate("a-b-c-")))
    notes = []
    task = SentenceClassification(ClassificationOptions(drop_labels=("-",)))
    examples = read_examples(str(path), "jsonl", task, registries().readers, notes=notes)
    assert [e["label"] for e in examples] == ["a", "b", "c"]
    assert notes == [f"{path}: skipped 3 records whose label is in task_options.drop_labels"]


# ----------------------------------------------------------------- label order
def examples(labels):
    return [{"text": "t", "label": lab, "where": f"f:{i}"} for i, lab in enumerate(labels)]


def test_integer_labels_are_ordered_numerically():
    task = SentenceClassification()
    data = [task.example_from_record({"text": "t", "label": i}, f"f:{i}") for i in range(12)][::-1]
    task.setup({"train": data})
    assert task.labels == [str(i) for i in range(12)]
    assert task.hf_config()["id2label"]["2"] == "2" and task.hf_config()["id2label"]["10"] == "10"


def test_integer_strings_from_csv_are_ordered_numerically():
    task = SentenceClassification()
    task.setup({"train": examples(["10", "-1", "2", "0", "1"])})
    assert task.labels == ["-1", "0", "1", "2", "10"]


def test_other_labels_are_sorted_as_strings():
    task = SentenceClassification()
    task.setup({"train": examples(["10", "2", "b", "a"])})
    assert task.labels == ["10", "2", "a", "b"]


def test_pair_integer_labels_are_ordered_numerically():
    task = SentencePair()
    task.setup({"train": examples(["2", "10", "1"])})
    assert task.labels == ["1", "2", "10"]


def test_run_writes_integer_labels_in_numeric_order(tmp_path, tiny_encoder):
    train = tmp_path / "train.jsonl"
    write_jsonl(train, [{"text": "good fine" if i % 2 else "bad poor", "label": i} for i in range(12)])
    spec = {"task": "sentence_classification", "encoder": {"model": tiny_encoder, "max_length": 16},
            "data": {"train": str(train)}, "train": {"max_steps": 1, "loggers": []},
            "output": str(tmp_path / "run")}
    run_spec(spec, tmp_path)
    config = json.loads((tmp_path / "run" / "best" / "config.json").read_text())
    assert config["id2label"] == {str(i): str(i) for i in range(12)}
    assert config["label2id"]["10"] == 10


# ----------------------------------------------------------------- task_options.labels
@pytest.mark.parametrize("task", TASKS)
def test_integer_option_labels_match_int_and_string_data_labels(tmp_path, tiny_encoder, task):
    # used to be refused: "task_options.labels: expected a list of a string, got [0, 1, ...]"
    train = write_jsonl(tmp_path / "train.jsonl", records(task, 2) + records(task, "1")
                        + records(task, 10.0))
    result = validate(tmp_path, tiny_encoder, task, train,
                      {"labels": [0, 1, 2, 10, "a"], "drop_labels": [-1]})
    assert result.exit_code == 0, result.output


def test_integer_option_labels_become_names():
    opts = ClassificationOptions(labels=(2, 0, True, "x"), drop_labels=(-1,))
    assert opts.labels == ("2", "0", "true", "x") and opts.drop_labels == ("-1",)
    task = SentenceClassification(opts)
    assert task.labels == ["2", "0", "true", "x"]   # the listed order, not sorted
    assert task.example_from_record({"text": "t", "label": -1}, "f.jsonl:1") == Skip("whose label is in task_options.drop_labels")
    assert PairOptions(labels=(1, 0)).labels == ("1", "0")


def test_option_labels_listed_twice_are_refused(tmp_path, tiny_encoder):
    train = write_jsonl(tmp_path / "train.jsonl", records("sentence_classification", "b"))
    assert_one_line_error(validate(tmp_path, tiny_encoder, "sentence_classification", train,
                                   {"labels": [1, "1", "a"]}),
                          "s.yaml", "task_options", "'1' is listed twice")
    with pytest.raises(SpecError):
        build(PairOptions, {"labels": ["a", "a"]}, "task_options", {"file": "s.yaml"})


def test_option_label_that_is_not_a_label_is_refused(tmp_path, tiny_encoder):
    train = write_jsonl(tmp_path / "train.jsonl", records("sentence_classification", "b"))
    assert_one_line_error(validate(tmp_path, tiny_encoder, "sentence_classification", train,
                                   {"labels": ["a", ""]}),
                          "s.yaml", "task_options", "labels: '' is not a label")


def test_head_dropout_follows_the_architectures_own_head():
    """classifier_dropout 0.0 is a setting, not "unset"; DistilBERT's heads read keys of their own."""
    from transformers import BertConfig, DistilBertConfig, ElectraConfig

    from taskbert import head_dropout

    assert head_dropout(BertConfig(hidden_dropout_prob=0.3)) == 0.3
    assert head_dropout(BertConfig(hidden_dropout_prob=0.3, classifier_dropout=0.0)) == 0.0
    assert head_dropout(ElectraConfig(classifier_dropout=0.25)) == 0.25
    distil = DistilBertConfig(seq_classif_dropout=0.2, dropout=0.15, qa_dropout=0.05)
    assert [head_dropout(distil, k) for k in ("sequence", "token", "qa")] == [0.2, 0.15, 0.05]
