"""``taskbert predict`` reads its input the way the run read its data: the run's
``data.reader_options`` apply to an input of the training data's format, ``--reader-option``
overrides them, a ``.txt`` read in the task's own format says so, and a bad plain-text line
names its file and line."""

import json

import pytest
from click.testing import CliRunner

from taskbert.cli import cli
from taskbert.testing import make_tiny_encoder, run_spec

WORDS = ["alice", "paris", "new", "york", "went", "to", "and"]


def _write_columns(path):
    """Three tab-separated columns (id, word, tag); some words hold a space."""
    sentences = [[("alice", "B-per"), ("went", "O"), ("to", "O"), ("new york", "B-loc")],
                 [("alice", "B-per"), ("and", "O"), ("paris", "B-loc")]] * 10
    with open(path, "w", encoding="utf-8") as fh:
        for sent in sentences:
            fh.write("".join(f"{i}\t{w}\t{t}\n" for i, (w, t) in enumerate(sent)) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict_inputs")
    data = _write_columns(root / "train.conll")
    spec = {"task": "token_classification",
            "encoder": {"model": make_tiny_encoder(str(root / "enc"), WORDS), "max_length": 16},
            "data": {"train": data, "validation": data,
                     "reader_options": {"separator": "\t", "token_column": 1, "label_column": 2}},
            "train": {"epochs": 1, "batch_size": 8, "loggers": []},
            "output": str(root / "run")}
    return run_spec(spec, str(root))[1]


def _predict(run_dir, path, *extra):
    result = CliRunner().invoke(cli, ["predict", run_dir, str(path), *extra])
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return result, lines


def test_predict_reads_the_training_file_with_the_runs_reader_options(run_dir, tmp_path):
    result, lines = _predict(run_dir, _write_columns(tmp_path / "test.conll"))
    assert result.exit_code == 0, result.output
    assert lines[0]["words"] == ["alice", "went", "to", "new york"]
    assert all(len(line["tags"]) == len(line["words"]) for line in lines)


def test_reader_option_overrides_the_runs(run_dir, tmp_path):
    plain = tmp_path / "plain.conll"
    plain.write_text("alice\nwent\nto\nparis\n\nnew york\n")   # words only, one column
    result, _ = _predict(run_dir, plain)
    assert result.exit_code == 2 and "plain.conll" in result.stderr   # the run's token_column 1
    result, lines = _predict(run_dir, plain, "--reader-option", "token_column=0",
                             "--reader-option", "label_column=null")
    assert result.exit_code == 0, result.output
    assert [line["words"] for line in lines] == [["alice", "went", "to", "paris"], ["new york"]]
    result, _ = _predict(run_dir, plain, "--reader-option", "token_column")
    assert result.exit_code == 2 and "--reader-option: expected KEY=VALUE, got 'token_column'" in result.stderr


def test_a_txt_read_in_the_tasks_format_says_so(run_dir, tmp_path):
    text = tmp_path / "raw.txt"
    text.write_text("alice went to paris\nalice and paris\n")
    result, lines = _predict(run_dir, text, "--format", "text")
    assert result.exit_code == 0 and len(lines) == 2 and "note:" not in result.stderr
    # read as CoNLL by default, one sentence a line would become one sentence of first words
    opts = ("--reader-option", "separator=null", "--reader-option", "token_column=0",
            "--reader-option", "label_column=null")
    even = tmp_path / "even.txt"
    even.write_text("alice went paris\nalice and paris\n")   # lines of one length: valid CoNLL rows
    result, _ = _predict(run_dir, even, *opts)
    assert result.exit_code == 2, result.output
    assert "it looks like one sentence a line; pass --format text" in result.stderr
    result, lines = _predict(run_dir, even, "--format", "conll", *opts)   # asked for: read as CoNLL
    assert result.exit_code == 0 and lines[0]["words"] == ["alice", "alice"], result.stderr
    conll = tmp_path / "words.txt"
    conll.write_text("alice\nwent\n\nparis\n")
    result, lines = _predict(run_dir, conll, *opts)
    assert result.exit_code == 0 and [line["words"] for line in lines] == [["alice", "went"], ["paris"]]
    assert "note: reading" in result.stderr and "as conll" in result.stderr
    assert "--format text reads one input a line" in result.stderr


def test_a_bad_text_line_names_file_and_line(tmp_path):
    """A task's ``record_from_text`` error gets the input's file and line number."""
    from taskbert.errors import DataError
    from taskbert.cli.runs import read_inputs

    class Task:
        default_format = None

        def record_from_text(self, line):
            if "bad" in line:
                raise DataError("needs two texts")
            return {"text": line}

        def example_from_record(self, record, where, labelled=False):
            return record

    path = tmp_path / "in.txt"
    path.write_text("fine\n\nbad line\n")
    with pytest.raises(DataError, match=r"in\.txt:3: needs two texts$"):
        read_inputs(str(path), Task())


def test_an_unknown_extension_needs_format(trained_run, tmp_path):
    """As for training data: a file whose extension says nothing is not guessed at."""
    source = tmp_path / "script.py"
    source.write_text("import os\nprint(os.getcwd())\n")
    result, _ = _predict(trained_run, source)
    assert result.exit_code == 2 and "cannot tell the format from the extension '.py'" in result.stderr
    result, lines = _predict(trained_run, source, "--format", "text")
    assert result.exit_code == 0 and len(lines) == 2


def test_an_input_with_the_training_files_extension_gets_the_runs_format():
    from taskbert.cli.runs import run_format

    info = {"spec": {"data": {"train": "/data/wsj/train.txt", "format": "wordtag"}}}
    assert run_format(info, "more.TXT") == "wordtag"
    assert run_format(info, "more.jsonl") is None
    assert run_format({"spec": {"data": {"train": "/data/train.txt"}}}, "more.txt") is None


def test_task_options_that_do_not_shape_the_model_change_at_predict_time(trained_run, tmp_path):
    """``--task-option`` changes an option marked ``predict`` (here the input's text field):
    the same texts under another field name get the same predictions; an option the trained
    model depends on, or none of the task's, is one line and exit 2, before weights load."""
    texts = ["good great fine", "bad awful poor", "great good", "poor bad"]
    plain, renamed = tmp_path / "plain.jsonl", tmp_path / "renamed.jsonl"
    plain.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    renamed.write_text("".join(json.dumps({"review": t}) + "\n" for t in texts))
    result, before = _predict(trained_run, plain)
    assert result.exit_code == 0, result.output
    result, _ = _predict(trained_run, renamed)
    assert result.exit_code == 2 and "missing text field 'text'" in result.stderr
    assert "--task-option text_field=" in result.stderr and "set task_options" not in result.stderr
    result, after = _predict(trained_run, renamed, "--task-option", "text_field=review")
    assert result.exit_code == 0, result.output
    assert [p["label"] for p in after] == [p["label"] for p in before] and len(after) == 4
    result, _ = _predict(trained_run, plain, "--task-option", "labels=[a, b]")
    assert result.exit_code == 2 and "--task-option labels: is fixed by the trained model; options " \
                                     "predict may change: max_windows, window_overlap, text_field, label_field" in result.stderr
    result, _ = _predict(trained_run, plain, "--task-option", "nope=1")
    assert result.exit_code == 2 and "is not an option of task 'sentence_classification'" in result.stderr
    result, _ = _predict(trained_run, plain, "--task-option", "text_field")
    assert result.exit_code == 2 and "expected KEY=VALUE" in result.stderr


def test_serve_takes_task_options_too(trained_run):
    pytest.importorskip("uvicorn")
    from taskbert.cli.serve import start_server

    srv = start_server(trained_run, "127.0.0.1", 0, task_options={"text_field": "review"})
    try:
        assert srv.state.predictor.task.options.text_field == "review"
    finally:
        srv.stop()
