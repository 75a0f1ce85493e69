"""taskbert debug data: truncation, labels, unseen labels, invalid BIO, duplicates."""

import json

import pytest
import yaml
from click.testing import CliRunner

import taskbert
from taskbert.plugins import manager as plugin_mod
from taskbert.cli import cli
from taskbert.cli.debug import bio_errors, debug_data
from taskbert.config.spec import load_spec
from taskbert.testing import write_polarity_data


ENCODED = []   # (examples, max_length) of each ToyTagger.encode_all call


class ToyTagger(taskbert.Task):
    """Word-level tags from {"words": [...], "tags": [...]}, enough for debug data."""

    name = "toy_tagger"
    description = "test tagger"
    def example_from_record(self, record, where, labelled=True):
        return {"words": record["words"], "tags": record.get("tags"), "where": where}

    def encode_all(self, examples, tokenizer, max_length):
        ENCODED.append((id(examples), max_length))
        enc = tokenizer([ex["words"] for ex in examples], is_split_into_words=True,
                        truncation=True, max_length=max_length)
        return [{"input_ids": ids, "example_index": i} for i, ids in enumerate(enc["input_ids"])]

    def gold(self, example):
        return example["tags"]


class ToyPlugin:
    @staticmethod
    @taskbert.hookimpl
    def taskbert_register_tasks(register):
        register(ToyTagger)


@pytest.fixture()
def toy_tasks():
    plugin_mod.reset()
    plugin_mod.get_plugin_manager().register(ToyPlugin, name="toy")
    yield
    plugin_mod.reset()


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def rec(text, tags):
    return {"words": text.split(), "tags": tags.split()}


def test_bio_errors_by_hand():
    tags = ["I-PER", "I-PER", "O", "B-LOC", "I-LOC", "I-ORG", "B-ORG", "I-ORG"]
    assert bio_errors(tags) == [(0, "O", "I-PER"), (5, "I-LOC", "I-ORG")]
    assert bio_errors(["B-X", "I-X", "O", "B-Y"]) == []


def test_word_level_task_report(toy_tasks, tiny_encoder, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", [
        rec("alice went to paris", "B-PER O O B-LOC"),           # 4 words + [CLS] [SEP] = 6 tokens
        rec("bob lives in london", "B-PER O O B-LOC"),
        rec("acme corp went to london and paris", "B-ORG I-ORG O O B-LOC O B-LOC"),  # 9 tokens: cut at 8
        rec("alice works at acme corp in london", "B-PER O O I-ORG I-ORG O B-LOC"),  # cut; I-ORG after O
    ])
    dev = write_jsonl(tmp_path / "dev.jsonl", [
        rec("bob lives in london", "B-PER O O B-LOC"),             # = train 2, same tags
        rec("alice went to paris", "B-PER O O O"),                 # = train 1, other tags
        rec("acme corp works in paris and london", "B-MISC I-MISC O O B-LOC O B-LOC"),  # cut; unseen
        rec("bob went to london", "I-PER O O B-LOC"),              # I-PER opens: invalid, unseen
    ])
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"task": "toy_tagger", "encoder": {"model": tiny_encoder, "max_length": 8},
                                    "data": {"train": train, "validation": dev}}))
    ENCODED.clear()
    report = debug_data(load_spec(str(path)))
    # each split encoded once at max_length (windows) and once unlimited (truncation, duplicates)
    assert len(ENCODED) == len(set(ENCODED)) == 4
    tr, va = report["splits"]["train"], report["splits"]["validation"]
    assert tr["truncation"] == {"examples": {"cut": 2, "total": 4}}
    assert va["truncation"] == {"examples": {"cut": 1, "total": 4}}
    assert tr["labels"] == {"O": 10, "B-LOC": 5, "B-PER": 3, "I-ORG": 3, "B-ORG": 1}
    assert va["unseen_in_train"] == {"B-MISC": 1, "I-MISC": 1, "I-PER": 1}
    assert tr["invalid_bio"]["sequences"] == 1 and tr["invalid_bio"]["transitions"] == 1
    assert tr["invalid_bio"]["first"] == [f"{train}:4: tag 4 I-ORG after O"]
    assert va["invalid_bio"]["first"] == [f"{dev}:4: tag 1 I-PER after O"]
    d = va["duplicates_of_train"]
    assert (d["same_gold"], d["different_gold"]) == (1, 1)
    assert d["first"] == [f"{dev}:1 = {train}:2", f"{dev}:2 = {train}:1"]

    result = CliRunner().invoke(cli, ["debug", "data", str(path)])
    assert result.exit_code == 0, result.output
    assert "examples cut by max_length: 2 of 4 (50.0%)" in result.output
    assert "labels unseen in train (3): B-MISC 1, I-MISC 1, I-PER 1" in result.output
    assert "invalid BIO: 1 I- tags in 1 sequences" in result.output
    assert "duplicates of train examples: 2 (1 same gold, 1 different gold)" in result.output


def test_classification_report_keeps_going_after_a_setup_problem(tiny_encoder, tmp_path):
    train = write_polarity_data(tmp_path / "train.jsonl", 30, 1)
    lines = open(train).read().splitlines()
    dev = tmp_path / "dev.jsonl"
    # the first training line again, a line with a label train never has, and a long text
    long_text = " ".join(["film"] * 40)
    dev.write_text("\n".join([lines[0], json.dumps({"text": "the plot", "label": "meh"}),
                              json.dumps({"text": long_text, "label": "pos"})]) + "\n")
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"task": "sentence_classification",
                                    "encoder": {"model": tiny_encoder, "max_length": 16},
                                    "data": {"train": train, "validation": str(dev)}}))
    result = CliRunner().invoke(cli, ["debug", "data", str(path), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert any("label 'meh' is not in the training data" in p for p in report["problems"])
    va = report["splits"]["validation"]
    assert va["unseen_in_train"] == {"meh": 1}
    assert va["truncation"]["examples"] == {"cut": 1, "total": 3}  # 42 tokens > 16
    assert va["duplicates_of_train"]["same_gold"] == 1
    train_labels = report["splits"]["train"]["labels"]
    expected = {}
    for line in lines:
        label = json.loads(line)["label"]
        expected[label] = expected.get(label, 0) + 1
    assert train_labels == expected and "invalid_bio" not in report["splits"]["train"]


def test_examples_without_a_label_are_counted():
    """A multi-label task's examples with an empty label set show apart from the label counts."""
    from taskbert.cli.debug import format_report

    report = {"spec": "s.yaml", "task": "multi", "max_length": 32,
              "splits": {"train": {"examples": 10, "labels": {"a": 6, "b": 3}, "without_labels": 4}}, "problems": []}
    text = format_report(report)
    assert "  labels (2): a 6 (66.7%), b 3 (33.3%)" in text
    assert "  examples without a label: 4 of 10 (40.0%)" in text
