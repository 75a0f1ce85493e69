"""The jsonl/csv/tsv/text readers: bad option values, headers with ``columns``, quoted
fields over several lines, did-you-mean and delimiter hints -- all one-line DataErrors
(exit 2 from the CLI), never a traceback."""

import pytest
import yaml
from click.testing import CliRunner

from taskbert import DataError
from taskbert.cli import cli
from taskbert_plugins.readers import read_csv, read_jsonl, read_text, read_tsv

CSV = "sentence,topic\ngood movie,pos\nbad film,neg\n"


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def validate(tmp_path, encoder, data_file, reader_options=None):
    """Run ``taskbert validate`` on a classification spec over ``data_file``."""
    data = {"train": data_file}
    if reader_options is not None:
        data["reader_options"] = reader_options
    spec = {"task": "sentence_classification", "encoder": {"model": encoder},
            "data": data, "task_options": {"text_field": "sentence", "label_field": "topic"}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return CliRunner().invoke(cli, ["validate", str(path)])


def one_line_error(result, *parts):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("options, message", [
    ({"delimiter": ";;"}, "data.reader_options.delimiter: must be one character, got ';;'"),
    ({"delimiter": 5}, "data.reader_options.delimiter: must be one character, got 5"),
    ({"delimiter": None}, "data.reader_options.delimiter: must be one character, got null"),
    ({"delimiter": '"'}, "data.reader_options.delimiter: must not be a quote or a line break"),
    ({"encoding": "utf9"}, "data.reader_options.encoding: unknown encoding 'utf9'"),
    ({"encoding": "rot13"}, "data.reader_options.encoding: 'rot13' is not a text encoding"),
    ({"encoding": "utf-16"}, "data.reader_options.encoding: 'utf-16' is not supported"),
    ({"encoding": 8}, "data.reader_options.encoding: must be the name of a text encoding"),
    ({"columns": "sentence"}, "data.reader_options.columns: must be a list of column names"),
    ({"columns": []}, "data.reader_options.columns: must name at least one column"),
    ({"columns": ["sentence", ""]}, "data.reader_options.columns: column 2 must be a non-empty name"),
    ({"columns": ["sentence", 3]}, "data.reader_options.columns: column 2 must be a non-empty name, got 3"),
    ({"columns": ["a", "a"]}, "data.reader_options.columns: names 'a' twice"),
    ({"header": "no"}, "data.reader_options.header: must be true or false, got 'no'"),
    ({"header": 1}, "data.reader_options.header: must be true or false, got 1"),
    ({"delimtier": ";"}, "unknown option 'delimtier' (did you mean 'delimiter'?); allowed: delimiter,"),
])
def test_csv_bad_option_values_are_one_line_data_errors(tmp_path, options, message):
    path = write(tmp_path / "train.csv", CSV)
    with pytest.raises(DataError) as info:
        list(read_csv(path, options))
    text = str(info.value)
    assert text.startswith(f"{path}: data.reader_options") and message in text and "\n" not in text


@pytest.mark.parametrize("reader", [read_jsonl, read_text, read_tsv])
def test_every_reader_checks_encoding_and_suggests_option_names(tmp_path, reader):
    path = write(tmp_path / "a.txt", '{"text": "x"}\n')
    with pytest.raises(DataError, match=r"a\.txt: data\.reader_options\.encoding: unknown encoding 'utf9'"):
        list(reader(path, {"encoding": "utf9"}))
    with pytest.raises(DataError, match=r"unknown option 'encodng' \(did you mean 'encoding'\?\)"):
        list(reader(path, {"encodng": "utf-8"}))


def test_tsv_checks_delimiter_too(tmp_path):
    path = write(tmp_path / "a.tsv", "a\tb\n1\t2\n")
    with pytest.raises(DataError, match=r"a\.tsv: data\.reader_options\.delimiter: must be one character, got '\\t\\t'"):
        list(read_tsv(path, {"delimiter": "\t\t"}))
    assert list(read_tsv(path, {})) == [(2, {"a": "1", "b": "2"})]


def test_columns_without_header_reads_every_line_by_default(tmp_path):
    path = write(tmp_path / "a.csv", CSV)
    records = list(read_csv(path, {"columns": ["text", "label"]}))
    assert records[0] == (1, {"text": "sentence", "label": "topic"}) and len(records) == 3


def test_header_true_with_columns_skips_the_header_line(tmp_path):
    path = write(tmp_path / "a.csv", "\n" + CSV)
    records = list(read_csv(path, {"columns": ["text", "label"], "header": True}))
    assert records == [(3, {"text": "good movie", "label": "pos"}), (4, {"text": "bad film", "label": "neg"})]
    with pytest.raises(DataError, match=r"a\.csv:2: the header line has 2 fields but "
                                        r"data\.reader_options\.columns names 3 \(a, b, c\)"):
        list(read_csv(path, {"columns": ["a", "b", "c"], "header": True}))
    with pytest.raises(DataError, match="columns must name the columns when header is false"):
        list(read_csv(path, {"header": False}))


def test_header_naming_a_column_twice_is_refused(tmp_path):
    path = write(tmp_path / "a.csv", "text,text\na,b\n")
    with pytest.raises(DataError, match=r"a\.csv:1: the header names column 'text' twice"):
        list(read_csv(path, {}))


def test_quoted_field_may_span_lines_and_later_lines_keep_their_numbers(tmp_path):
    path = write(tmp_path / "a.csv", 'sentence,topic\n"good\nmovie, really",pos\n\nbad film,neg\nthe plot\n')
    reader = read_csv(path, {})
    assert next(reader) == (2, {"sentence": "good\nmovie, really", "topic": "pos"})
    assert next(reader) == (5, {"sentence": "bad film", "topic": "neg"})
    with pytest.raises(DataError, match=r"a\.csv:6: 1 fields, expected 2 \(sentence, topic\)$"):
        next(reader)


def test_unclosed_quote_names_the_record_first_line(tmp_path):
    path = write(tmp_path / "a.csv", 'sentence,topic\ngood,pos\n"bad film,neg\nnice,pos\n')
    with pytest.raises(DataError, match=r"a\.csv:3: a quoted field in this record is never closed "
                                        r"\(it runs to the end of the file, line 4\)"):
        list(read_csv(path, {}))
    path = write(tmp_path / "b.csv", 'sentence,topic\n"good\nmovie",pos,extra\nnice,pos\n')
    with pytest.raises(DataError, match=r"b\.csv:2: 3 fields, expected 2 \(sentence, topic\) "
                                        r"\(the record runs from line 2 to 3: check for an unclosed quote\)"):
        list(read_csv(path, {}))


def test_other_delimiter_in_a_one_field_header_is_named(tmp_path):
    path = write(tmp_path / "a.csv", "sentence;topic\ngood movie;pos\nbad film;neg\n")
    with pytest.raises(DataError, match=r'a\.csv:1: the header \'sentence;topic\' is one field; the file '
                                        r'looks semicolon-separated: set data\.reader_options\.delimiter: ";"'):
        list(read_csv(path, {}))
    assert list(read_csv(path, {"delimiter": ";"}))[0] == (2, {"sentence": "good movie", "topic": "pos"})
    path = write(tmp_path / "b.tsv", "sentence|topic\ngood movie|pos\n")
    with pytest.raises(DataError, match=r'delimiter: "\|"'):
        list(read_tsv(path, {}))
    path = write(tmp_path / "c.csv", "sentence\tx\ngood movie\tpos\n")
    with pytest.raises(DataError, match=r'delimiter: "\\t"'):
        list(read_csv(path, {}))
    path = write(tmp_path / "d.csv", "good;pos\n")
    with pytest.raises(DataError, match=r'd\.csv:1: 1 fields, expected 2 \(s, t\); the file looks '
                                        r'semicolon-separated: set data\.reader_options\.delimiter: ";"'):
        list(read_csv(path, {"columns": ["s", "t"]}))


def test_one_column_file_is_not_mistaken_for_another_delimiter(tmp_path):
    # the header holds a ';' but the rows do not: a genuine one-column file
    path = write(tmp_path / "a.csv", "a;b\nhello\nworld\n")
    assert list(read_csv(path, {})) == [(2, {"a;b": "hello"}), (3, {"a;b": "world"})]
    # two candidate delimiters: ambiguous, so no hint (the task reports the missing field)
    path = write(tmp_path / "b.csv", "a;b|c\nx;y|z\n")
    assert list(read_csv(path, {})) == [(2, {"a;b|c": "x;y|z"})]


@pytest.mark.parametrize("options, message", [
    ({"delimiter": ";;"}, "data.reader_options.delimiter: must be one character, got ';;'"),
    ({"delimiter": None}, "data.reader_options.delimiter: must be one character, got null"),
    ({"encoding": "utf9"}, "data.reader_options.encoding: unknown encoding 'utf9'"),
    ({"columns": "sentence"}, "data.reader_options.columns: must be a list of column names"),
    ({"lable_column": 1}, "data.reader_options: unknown option 'lable_column' (did you mean 'columns'?); allowed:"),
])
def test_validate_exits_2_with_one_line(tmp_path, tiny_encoder, options, message):
    data = write(tmp_path / "train.csv", CSV)
    one_line_error(validate(tmp_path, tiny_encoder, data, options), f"{data}: {message}")


def test_validate_header_true_with_columns_has_no_header_label(tmp_path, tiny_encoder):
    data = write(tmp_path / "train.csv", CSV)
    result = validate(tmp_path, tiny_encoder, data, {"columns": ["sentence", "topic"], "header": True})
    assert result.exit_code == 0 and "train 2" in result.output, result.output


def test_validate_semicolon_file_names_the_delimiter(tmp_path, tiny_encoder):
    data = write(tmp_path / "train.csv", "sentence;topic\ngood movie;pos\nbad film;neg\n")
    one_line_error(validate(tmp_path, tiny_encoder, data), f"{data}:1:",
                   'set data.reader_options.delimiter: ";"')


def test_jsonl_unpaired_surrogate_and_json_message(tmp_path):
    from taskbert import DataError
    from taskbert_plugins.readers import read_jsonl

    path = tmp_path / "s.jsonl"
    path.write_text('{"text": "ok \\ud83d\\ude00 pair"}\n{"text": "good \\ud800 movie"}\n')
    with pytest.raises(DataError, match=r"s\.jsonl:2: holds an unpaired surrogate escape"):
        list(read_jsonl(str(path), {}))
    path.write_text('{"text": "a\tb"}\n')   # a raw tab: "Invalid control character at"
    with pytest.raises(DataError) as info:
        list(read_jsonl(str(path), {}))
    assert " at at " not in str(info.value) and "at column" in str(info.value)
