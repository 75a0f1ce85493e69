"""taskbert report: curves and confusion matrices from a run's files, checked by hand."""

import json
import os

import pytest
from click.testing import CliRunner

from taskbert.cli import cli
from taskbert.cli.report import confusion, label_pairs, write_report
from taskbert.testing import run_spec, tiny_classification_spec, write_polarity_data


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)


def png_size(path):
    from PIL import Image

    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        return im.size


def test_classification_pairs_and_matrix_by_hand():
    lines = [
        {"split": "validation", "index": 0, "label": "pos", "probabilities": {"neg": 0.2, "pos": 0.8}, "gold": "pos"},
        {"split": "validation", "index": 1, "label": "pos", "probabilities": {"neg": 0.4, "pos": 0.6}, "gold": "neg"},
        {"split": "validation", "index": 2, "label": "neg", "probabilities": {"neg": 0.9, "pos": 0.1}, "gold": "neg"},
        {"split": "validation", "index": 3, "label": "neg", "probabilities": {"neg": 0.7, "pos": 0.3}, "gold": "neg"},
    ]
    field, pairs = label_pairs(lines)
    assert field == "label"
    labels, matrix = confusion(pairs)
    assert labels == ["neg", "pos"]
    assert matrix == [[2, 1], [0, 1]]  # rows gold, columns predicted


def test_tagging_pairs_prefer_tags_over_words():
    # words and tags are both lists of strings as long as the gold: tags agree with it
    lines = [
        {"split": "test", "index": 0, "words": ["alice", "went", "home"], "tags": ["B-PER", "O", "O"],
         "gold": ["B-PER", "O", "O"]},
        {"split": "test", "index": 1, "words": ["acme", "corp"], "tags": ["B-ORG", "O"],
         "gold": ["B-ORG", "I-ORG"]},
    ]
    field, pairs = label_pairs(lines)
    assert field == "tags"
    labels, matrix = confusion(pairs)
    assert labels == ["O", "B-ORG", "I-ORG", "B-PER"]  # O first, then tags grouped by type
    assert matrix == [[2, 0, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]]
    # gold as a mapping names the field itself
    keyed = [{"split": "test", "tags": ln["tags"], "words": ln["words"], "gold": {"tags": ln["gold"]}} for ln in lines]
    assert label_pairs(keyed) == ("tags", pairs)


def test_non_categorical_gold_gives_no_matrix():
    qa = [{"split": "validation", "index": 0, "text": "paris", "score": 3.1, "gold": ["Paris", "paris"]}]
    assert label_pairs(qa) == (None, [])
    ragged = [{"split": "validation", "tags": ["O"], "gold": ["O", "O"]}]  # lengths differ
    assert label_pairs(ragged) == (None, [])


@pytest.fixture(scope="module")
def trained(tiny_encoder, tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    train = write_polarity_data(folder / "train.jsonl", 240, 1)
    dev = write_polarity_data(folder / "dev.jsonl", 80, 2)
    spec = tiny_classification_spec(tiny_encoder, train, dev, folder / "run", epochs=3, eval_every=5)
    return run_spec(spec, str(folder))


def test_report_of_a_trained_run(trained, tmp_path):
    metrics, run_dir = trained
    result = CliRunner().invoke(cli, ["report", run_dir, "-o", str(tmp_path / "rep")])
    assert result.exit_code == 0, result.output
    names = sorted(os.listdir(tmp_path / "rep"))
    assert names == ["confusion-validation.png", "loss.png", "lr.png", "metrics.png", "report.md"]
    for name in names[:-1]:
        width, height = png_size(tmp_path / "rep" / name)
        assert width > 300 and height > 200
    # the matrix agrees with the run's own accuracy on its 80 validation examples
    report = write_report(run_dir, str(tmp_path / "rep2"))
    labels, matrix = report["confusion"]["validation"]
    assert labels == ["neg", "pos"] and sum(map(sum, matrix)) == 80
    assert (matrix[0][0] + matrix[1][1]) / 80 == pytest.approx(metrics["validation/accuracy"])
    text = (tmp_path / "rep" / "report.md").read_text()
    assert f"| accuracy | {metrics['validation/accuracy']:.4f} |" in text
    assert "![confusion validation](confusion-validation.png)" in text and "![loss](loss.png)" in text


def test_report_of_a_tagging_run_folder(tmp_path):
    run = tmp_path / "tagrun"
    run.mkdir()
    write_jsonl(run / "metrics.jsonl", [
        {"step": 1, "train/loss": 2.0, "lr": 1e-4},
        {"step": 2, "train/loss": 1.0, "lr": 5e-5},
        {"validation/entity_f1": 0.5, "validation/loss": 1.2, "step": 2, "epoch": 1},
        {"validation/entity_f1": 0.5, "step": 2, "best_step": 2, "final": True},
    ])
    write_jsonl(run / "predictions.jsonl", [
        {"split": "validation", "index": 0, "words": ["bob", "lives", "in", "paris"],
         "tags": ["B-PER", "O", "O", "B-LOC"], "gold": ["B-PER", "O", "O", "B-LOC"]},
        {"split": "validation", "index": 1, "words": ["paris"], "tags": ["O"], "gold": ["B-LOC"]},
    ])
    report = write_report(str(run))
    labels, matrix = report["confusion"]["validation"]
    assert labels == ["O", "B-LOC", "B-PER"]
    assert matrix == [[2, 0, 0], [1, 1, 0], [0, 0, 1]]
    text = (run / "report" / "report.md").read_text()
    assert "`tags` against the gold (5 tags)" in text and "B-LOC → O (1)" in text


def test_report_refuses_a_folder_without_metrics(tmp_path):
    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "no metrics.jsonl" in result.output


def test_the_tasks_report_labels_decide_what_is_compared():
    """A multi-label gold (a set of labels, as a list) is not per-word tags: a task that says
    ``report_labels = None`` gets no matrix; ``per_example`` never pairs lists, ``per_word``
    never pairs single labels."""
    multi = [{"split": "validation", "labels": ["sports", "news"], "gold": ["news", "sports"]}]
    assert label_pairs(multi)[1] == [("news", "sports"), ("sports", "news")]   # the shape guess
    assert label_pairs(multi, kind=None) == (None, [])
    assert label_pairs(multi, kind="per_example") == (None, [])
    one = [{"split": "validation", "label": "pos", "gold": "neg"}]
    assert label_pairs(one, kind="per_example") == ("label", [("neg", "pos")])
    assert label_pairs(one, kind="per_word") == (None, [])


def test_a_plugin_adds_a_section_and_the_run_task_sets_the_kind(trained, monkeypatch, tmp_path):
    """``taskbert_report_sections`` gets the run's task (from best/) and its lines reach
    report.md; the built-in classifier compares labels per example."""
    from types import SimpleNamespace

    from taskbert import hookimpl
    from taskbert.plugins import manager as plugin_mod

    seen = {}

    @hookimpl
    def taskbert_report_sections(run_dir, out_dir, task, history, predictions):
        seen.update(task=task.name, kind=task.report_labels, lines=len(predictions))
        return ["## Calibration", "", "all fine"]

    real = plugin_mod.metadata.entry_points
    ep = SimpleNamespace(name="extra", value="fake_extra", load=lambda: SimpleNamespace(
        taskbert_report_sections=taskbert_report_sections), dist=SimpleNamespace(name="extra", version="1"))
    monkeypatch.setattr(plugin_mod.metadata, "entry_points",
                        lambda **kw: [ep] if kw.get("group") == plugin_mod.ENTRY_POINT_GROUP else real(**kw))
    plugin_mod.reset()
    try:
        write_report(trained[1], str(tmp_path / "rep"))
    finally:
        plugin_mod.reset()
    assert seen["task"] == "sentence_classification" and seen["kind"] == "per_example" and seen["lines"] > 0
    assert "## Calibration\n\nall fine" in (tmp_path / "rep" / "report.md").read_text()
