"""Built-in readers: jsonl, csv, tsv and plain text lines.

A reader is ``reader(path, options) -> iterator of (line_number, record)``. Problems
raise DataError naming the file and line. Options come from the spec's
``data.reader_options``; unknown options and bad option values are refused in one line.
"""

import codecs
import csv
import difflib
import json

from taskbert import DataError, hookimpl

#: delimiters worth suggesting when a header line comes out as one field
COMMON_DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
#: bytes whose meaning must not change: lines are split on b"\n" before decoding
_ASCII_PROBE = b'\n,;\t|"a'


def _show(value):
    """A value as the user wrote it in YAML (``null``, ``true``) or its repr."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    return repr(value)


def check_encoding(path, encoding, line_based=True):
    """Refuse an encoding Python does not know, or (``line_based``) one whose lines cannot be
    split on bytes (utf-16, utf-32, EBCDIC)."""
    key = f"{path}: data.reader_options.encoding"
    if not isinstance(encoding, str) or not encoding:
        raise DataError(f"{key}: must be the name of a text encoding such as \"utf-8\", "
                        f"got {_show(encoding)}")
    try:
        codecs.lookup(encoding)
        ascii_compatible = _ASCII_PROBE.decode(encoding) == _ASCII_PROBE.decode("ascii")
    except LookupError as exc:
        why = (f"unknown encoding {encoding!r}" if "unknown encoding" in str(exc)
               else f"{encoding!r} is not a text encoding")
        raise DataError(f"{key}: {why} (use e.g. utf-8, latin-1, cp1252)") from None
    except UnicodeDecodeError:
        ascii_compatible = False
    if line_based and not ascii_compatible:
        raise DataError(f"{key}: {encoding!r} is not supported (lines are split on bytes, so the "
                        f"encoding must keep ASCII as is, e.g. utf-8, latin-1, cp1252); "
                        f"convert the file to UTF-8")


def _decoded_lines(path, encoding):
    """Yield ``(line_number, line)`` with the line ending kept; bad bytes name their line."""
    check_encoding(path, encoding)
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, 1):
            try:
                line = raw.decode(encoding)
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}:{n}: not valid {encoding} (byte {exc.start}: "
                                f"{raw[exc.start:exc.start + 1]!r}); convert the file to UTF-8") from None
            if n == 1 and line.startswith("\ufeff"):
                line = line[1:]
            yield n, line


def text_lines(path, encoding="utf-8"):
    """Yield ``(line_number, line)`` without the newline; bad bytes name their line."""
    for n, line in _decoded_lines(path, encoding):
        yield n, line.rstrip("\r\n")


def check_options(path, options, allowed):
    """Refuse reader options the reader does not know (with a did-you-mean), and a bad
    ``encoding`` value."""
    for key in options:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), list(allowed), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise DataError(f"{path}: data.reader_options: unknown option {key!r}{hint}; "
                            f"allowed: {', '.join(allowed) or 'none'} (data.reader_options apply to "
                            f"every split's file, so all splits need one format)")
    if "encoding" in options:
        check_encoding(path, options["encoding"], line_based=False)


class DuplicateKey(ValueError):
    """A JSON object names one key twice (``json`` would keep the last value silently)."""


def unique_keys(pairs):
    """``object_pairs_hook`` for ``json.loads``: the object as a dict, or :class:`DuplicateKey`
    naming the first key given twice."""
    out = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKey(key)
        out[key] = value
    return out


def read_jsonl(path, options):
    """One JSON object per line; blank lines are skipped."""
    check_options(path, options, ("encoding",))
    for n, line in text_lines(path, options.get("encoding", "utf-8")):
        if not line.strip():
            continue
        try:
            record = json.loads(line, object_pairs_hook=unique_keys)
        except DuplicateKey as exc:
            raise DataError(f"{path}:{n}: key {exc.args[0]!r} appears twice in one object on this line; "
                            f"keep one (JSON would keep the last silently)") from None
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{n}: invalid JSON ({exc.msg.removesuffix(' at')} at column {exc.colno})") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}:{n}: expected a JSON object per line, got {type(record).__name__}")
        if "\\u" in line and _unpaired_surrogate(record):   # valid JSON, but no text a tokenizer takes
            raise DataError(f"{path}:{n}: holds an unpaired surrogate escape (\\ud800-\\udfff without its "
                            f"pair); it is not a character: fix the file's encoding")
        yield n, record


def _unpaired_surrogate(value):
    """True when a string anywhere in ``value`` cannot be encoded as UTF-8 (a lone surrogate)."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check_delimited_options(path, options, default_delimiter):
    """``(delimiter, header, columns)`` from the options, each checked."""
    key = f"{path}: data.reader_options"
    delimiter = options.get("delimiter", default_delimiter)
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise DataError(f"{key}.delimiter: must be one character, got {_show(delimiter)}")
    if delimiter in "\"\r\n":
        raise DataError(f"{key}.delimiter: must not be a quote or a line break, got {delimiter!r}")
    columns = options.get("columns")
    if columns is not None:
        if not isinstance(columns, (list, tuple)):
            raise DataError(f"{key}.columns: must be a list of column names "
                            f"(e.g. [sentence, topic]), got {_show(columns)}")
        if not columns:
            raise DataError(f"{key}.columns: must name at least one column, got []")
        for i, name in enumerate(columns, 1):
            if not isinstance(name, str) or not name.strip():
                raise DataError(f"{key}.columns: column {i} must be a non-empty name, got {_show(name)}")
            if name in columns[:i - 1]:
                raise DataError(f"{key}.columns: names {name!r} twice; column names must be distinct")
        columns = list(columns)
    # without ``columns`` the first line names them; with ``columns`` the file has no
    # header line unless ``header: true`` says so (that line is then skipped)
    header = options.get("header", columns is None)
    if not isinstance(header, bool):
        raise DataError(f"{key}.header: must be true or false, got {_show(header)}")
    if not header and columns is None:
        raise DataError(f"{key}.columns must name the columns when header is false")
    return delimiter, header, columns


def _delimited_records(path, encoding, delimiter):
    """Yield ``(first_line, last_line, values)`` per non-blank record; quoted fields
    (csv) may span lines, and a record is named by its first line."""
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    last, done = [""], [False]

    def feed():
        for _, line in _decoded_lines(path, encoding):
            last[0] = line
            yield line
        done[0] = True

    reader = csv.reader(feed(), delimiter=delimiter, quoting=quoting)
    while True:
        start = reader.line_num + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            why = str(exc)
            if why.startswith("new-line character seen in unquoted field"):
                why = "a carriage return (\\r) inside an unquoted field; quote the field or remove it"
            raise DataError(f"{path}:{start}: {why}{_span(start, reader.line_num)}") from None
        if done[0]:  # the reader asked for a line past the end: a quote never closed
            raise DataError(f"{path}:{start}: a quoted field in this record is never closed "
                            f"(it runs to the end of the file, line {reader.line_num})")
        if reader.line_num == start and not last[0].strip():
            continue  # a blank line
        yield start, reader.line_num, values


def _span(start, end):
    """The note for an error in a record that runs over several lines."""
    if end <= start:
        return ""
    return f" (the record runs from line {start} to {end}: check for an unclosed quote)"


def _other_delimiter(field, delimiter, parts=None):
    """The one common delimiter (not ``delimiter``) that ``field`` contains, splitting it
    into ``parts`` pieces when given; None when there is none or more than one."""
    found = [d for d in COMMON_DELIMITERS if d != delimiter and d in field]
    if len(found) != 1 or (parts is not None and len(field.split(found[0])) != parts):
        return None
    return found[0]


def _delimiter_hint(d):
    return (f"the file looks {COMMON_DELIMITERS[d]}-separated: "
            f"set data.reader_options.delimiter: {json.dumps(d)}")


def _read_delimited(path, options, default_delimiter):
    check_options(path, options, ("delimiter", "header", "columns", "encoding"))
    delimiter, header, given = _check_delimited_options(path, options, default_delimiter)
    columns = given
    suspect = None  # another delimiter a one-field header line suggests
    header_line = None
    for start, end, values in _delimited_records(path, options.get("encoding", "utf-8"), delimiter):
        if header_line is None and header:
            header_line = start
            if given is None:
                columns = values
                for i, name in enumerate(columns):
                    if name in columns[:i]:
                        raise DataError(f"{path}:{start}: the header names column {name!r} twice; "
                                        f"column names must be distinct")
                if len(columns) == 1:
                    suspect = _other_delimiter(columns[0], delimiter)
            elif len(values) != len(given):
                raise DataError(f"{path}:{start}: the header line has {len(values)} fields but "
                                f"data.reader_options.columns names {len(given)} "
                                f"({', '.join(given)}){_span(start, end)}")
            continue
        if suspect and len(values) == 1 and \
                _other_delimiter(values[0], delimiter, len(columns[0].split(suspect))) == suspect:
            raise DataError(f"{path}:{header_line}: the header {columns[0]!r} is one field; "
                            f"{_delimiter_hint(suspect)}")
        if len(values) != len(columns):
            hint = ""
            if suspect:
                hint = f"; the header {columns[0]!r} is one field: {_delimiter_hint(suspect)}"
            elif len(values) == 1 and len(columns) > 1:
                d = _other_delimiter(values[0], delimiter, len(columns))
                hint = f"; {_delimiter_hint(d)}" if d else ""
            raise DataError(f"{path}:{start}: {len(values)} fields, expected {len(columns)} "
                            f"({', '.join(columns)}){_span(start, end)}{hint}")
        suspect = None
        yield start, dict(zip(columns, values))
    if header and header_line is None:
        raise DataError(f"{path}: has no header line")


def read_csv(path, options):
    """Comma-separated values with a header line (or ``columns`` in the options).

    A quoted field may span lines (RFC 4180); the record is named by its first line.
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
