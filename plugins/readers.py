"""Built-in readers: jsonl, csv, tsv and plain text lines.

A reader is ``reader(path, options) -> iterator of (line_number, record)``. Problems
raise DataError naming the file and line. Options come from the spec's
``data.reader_options``; unknown options are refused.
"""

import csv
import io
import json

from taskbert import DataError, hookimpl


def text_lines(path, encoding="utf-8"):
    """Yield ``(line_number, line)`` without the newline; bad bytes name their line."""
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, 1):
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}:{n}: not valid {encoding} (byte {exc.start}: "
                                f"{raw[exc.start:exc.start + 1]!r}); convert the file to UTF-8") from None
            if n == 1 and line.startswith("\ufeff"):
                line = line[1:]
            yield n, line.rstrip("\r\n")


def check_options(path, options, allowed):
    """Refuse reader options the reader does not know."""
    for key in options:
        if key not in allowed:
            raise DataError(f"{path}: data.reader_options: unknown option {key!r}; "
                            f"allowed: {', '.join(allowed) or 'none'}")


def read_jsonl(path, options):
    """One JSON object per line; blank lines are skipped."""
    check_options(path, options, ("encoding",))
    for n, line in text_lines(path, options.get("encoding", "utf-8")):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{n}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}:{n}: expected a JSON object per line, got {type(record).__name__}")
        yield n, record


def _read_delimited(path, options, default_delimiter):
    check_options(path, options, ("delimiter", "header", "columns", "encoding"))
    delimiter = options.get("delimiter", default_delimiter)
    encoding = options.get("encoding", "utf-8")
    columns = options.get("columns")
    lines = text_lines(path, encoding)
    if options.get("header", True) and columns is None:
        for n, first in lines:
            if first.strip():
                columns = next(csv.reader([first], delimiter=delimiter))
                break
        else:
            raise DataError(f"{path}: has no header line")
    if not columns:
        raise DataError(f"{path}: data.reader_options.columns must name the columns when header is false")
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    for n, line in lines:
        if not line.strip():
            continue
        try:
            values = next(csv.reader(io.StringIO(line), delimiter=delimiter, quoting=quoting))
        except csv.Error as exc:
            raise DataError(f"{path}:{n}: {exc}") from None
        if len(values) != len(columns):
            raise DataError(f"{path}:{n}: {len(values)} fields, expected {len(columns)} "
                            f"({', '.join(columns)})")
        yield n, dict(zip(columns, values))


def read_csv(path, options):
    """Comma-separated values with a header line (or ``columns`` in the options).

    Quoted fields may not span lines: one record per line keeps line numbers exact.
    """
    return _read_delimited(path, options, ",")


def read_tsv(path, options):
    """Tab-separated values with a header line (or ``columns``); no quoting."""
    return _read_delimited(path, options, "\t")


def read_text(path, options):
    """Plain text: every non-blank line is a record ``{"text": line}``."""
    check_options(path, options, ("encoding",))
    for n, line in text_lines(path, options.get("encoding", "utf-8")):
        if line.strip():
            yield n, {"text": line}


@hookimpl
def taskbert_register_readers(register):
    register("jsonl", read_jsonl)
    register("csv", read_csv)
    register("tsv", read_tsv)
    register("text", read_text)
