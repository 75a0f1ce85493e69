"""Readers for word-level data: CoNLL column files and one-sentence-a-line ``word/TAG``.

Both yield one record per sentence, ``{"tokens": [...], "tags": [...]}`` (``tags`` left
out when the file has none), numbered by the sentence's first line, so errors and
predictions point at the right place.

* ``conll``: one word a row, columns split on whitespace (or ``separator``), a blank
  line between sentences, ``-DOCSTART-`` rows skipped. Every row must have as many
  columns as the file's first row (or ``columns``). A one-column file holds words only.
* ``wordtag``: one sentence a line, ``word/TAG`` tokens split on whitespace; the tag
  follows the *last* ``/`` so words like ``1/2`` keep their slash.
"""

from taskbert import DataError, hookimpl
from taskbert_plugins.readers import check_options, text_lines

CONLL_OPTIONS = ("token_column", "label_column", "separator", "columns", "encoding")


def _column(path, n, value, name, width):
    """Resolve a (possibly negative) column index against a row of ``width`` columns."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise DataError(f"{path}: data.reader_options.{name}: expected a column number, got {value!r}")
    if not -width <= value < width:
        raise DataError(f"{path}:{n}: data.reader_options.{name} {value} is out of range "
                        f"for rows of {width} columns (use 0 to {width - 1}, or -1 for the last)")
    return value % width


def read_conll(path, options):
    """CoNLL columns: options ``token_column`` (default 0), ``label_column`` (default -1,
    the last; null for words only), ``separator`` (default any whitespace; ``"\\t"``
    keeps spaces inside words), ``columns`` (default: the first row's count), ``encoding``."""
    check_options(path, options, CONLL_OPTIONS)
    separator = options.get("separator")
    expected = options.get("columns")
    if expected is not None and (isinstance(expected, bool) or not isinstance(expected, int) or expected < 1):
        raise DataError(f"{path}: data.reader_options.columns: expected a positive number, got {expected!r}")
    expected_from = "data.reader_options.columns"
    token_col = label_col = None
    tokens, tags, first_line = [], [], None

    def sentence():
        record = {"tokens": tokens}
        if label_col is not None:
            record["tags"] = tags
        return first_line, record

    for n, line in text_lines(path, options.get("encoding", "utf-8")):
        if not line.strip():
            if tokens:
                yield sentence()
                tokens, tags, first_line = [], [], None
            continue
        fields = line.split(separator) if separator else line.split()
        if separator:
            fields = [f.strip() for f in fields]
        if fields[0] == "-DOCSTART-":
            if tokens:  # a document boundary also ends a sentence
                yield sentence()
                tokens, tags, first_line = [], [], None
            continue
        if expected is None:
            expected, expected_from = len(fields), f"as on line {n}"
        if len(fields) != expected:
            raise DataError(f"{path}:{n}: {len(fields)} columns, expected {expected} ({expected_from}); "
                            f"row: {line.strip()[:60]!r}")
        if token_col is None:
            token_col = _column(path, n, options.get("token_column", 0), "token_column", expected)
            label = options.get("label_column", -1)
            if label is not None and expected > 1:
                label_col = _column(path, n, label, "label_column", expected)
                if label_col == token_col:
                    raise DataError(f"{path}: data.reader_options: token_column and label_column "
                                    f"are both column {token_col}; they must differ")
        if not fields[token_col]:
            raise DataError(f"{path}:{n}: empty word in column {token_col}")
        if first_line is None:
            first_line = n
        tokens.append(fields[token_col])
        if label_col is not None:
            tags.append(fields[label_col])
    if tokens:
        yield sentence()


def read_wordtag(path, options):
    """One sentence a line of ``word/TAG`` tokens; options ``separator`` (default ``/``)
    and ``encoding``. A token without the separator is an error naming its line."""
    check_options(path, options, ("separator", "encoding"))
    sep = options.get("separator", "/")
    if not isinstance(sep, str) or not sep:
        raise DataError(f"{path}: data.reader_options.separator: expected a non-empty string, got {sep!r}")
    for n, line in text_lines(path, options.get("encoding", "utf-8")):
        if not line.strip():
            continue
        tokens, tags = [], []
        for k, item in enumerate(line.split(), 1):
            word, found, tag = item.rpartition(sep)
            if not found or not word or not tag:
                raise DataError(f"{path}:{n}: token {k} {item!r} is not word{sep}TAG (format wordtag: "
                                f"tokens split by spaces, the tag after the last {sep!r}); "
                                f"use --format text for untagged sentences")
            tokens.append(word)
            tags.append(tag)
        yield n, {"tokens": tokens, "tags": tags}


@hookimpl
def taskbert_register_readers(register):
    register("conll", read_conll)
    register("wordtag", read_wordtag)
