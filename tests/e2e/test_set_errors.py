"""Errors that come from a ``--set`` value say so, even when they are found after the spec is
read (a data file, a logger, a metric); a broken YAML list in ``--set`` is an error, not a
string; a misspelt data file or metric gets a did-you-mean."""

from click.testing import CliRunner

from taskbert.cli import cli
from taskbert.testing import tiny_classification_spec, write_polarity_data, write_spec


def _validate(tmp_path, tiny_encoder, *overrides):
    train = write_polarity_data(tmp_path / "train.jsonl", 20, 1)
    dev = write_polarity_data(tmp_path / "validation.jsonl", 10, 2)
    path = write_spec(tiny_classification_spec(tiny_encoder, train, dev, str(tmp_path / "run")), str(tmp_path))
    args = ["validate", path] + [a for o in overrides for a in ("--set", o)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_a_later_check_names_the_set_that_gave_the_value(tmp_path, tiny_encoder):
    line = _validate(tmp_path, tiny_encoder, "train.loggers=[csvv]", "train.lr=0.01")
    assert "unknown logger 'csvv'" in line and line.endswith("(set by --set train.loggers=[csvv])")
    line = _validate(tmp_path, tiny_encoder, "data.validation=valdation.jsonl")
    assert "file not found" in line and "(did you mean validation.jsonl?)" in line
    assert line.endswith("(set by --set data.validation=valdation.jsonl)")


def test_a_metric_part_of_longer_names_is_suggested(tmp_path, tiny_encoder):
    line = _validate(tmp_path, tiny_encoder, "task_options.metrics=[f1]")
    assert "unknown metric 'f1' (did you mean 'macro_f1', 'micro_f1', 'squad_f1' or 'weighted_f1'?)" in line


def test_a_broken_yaml_list_in_set_is_refused(tmp_path, tiny_encoder):
    line = _validate(tmp_path, tiny_encoder, "train.lr=[1")
    assert line.startswith("error: --set: 'train.lr=[1': the value is not valid YAML")
    assert "set by" not in line


def test_a_comma_string_for_a_list_and_a_number_for_a_mapping_say_how_to_write_them(tmp_path, tiny_encoder):
    line = _validate(tmp_path, tiny_encoder, "task_options.metrics=accuracy,macro_f1")
    assert "'accuracy,macro_f1' is one string; a list is written [accuracy, macro_f1]" in line
    line = _validate(tmp_path, tiny_encoder, "data.limit=10")
    assert "data.limit: expected a mapping, got 10 (e.g. data.limit: {train: 10}" in line
