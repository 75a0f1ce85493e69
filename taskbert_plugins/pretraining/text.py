"""Raw text for pretraining: the ``documents`` reader, sentence splitting, and reading
document text back from disk.

A corpus is plain text holding either one document per line or documents separated by
blank lines (inside a document each line is a paragraph or a sentence). The reader yields
one record per document with its byte range in the file, so a task can keep only that
range (a few integers) and read the text again when it needs it: the corpus itself never
has to fit in memory.
"""

import re

from taskbert import DataError

LAYOUTS = ("auto", "blank_line", "line")
#: how many lines ``layout: auto`` looks at for a blank line between documents
AUTO_LINES = 100_000


def _decode(raw, path, line_no, encoding):
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}:{line_no}: not valid {encoding} (byte {exc.start}: "
                        f"{raw[exc.start:exc.start + 1]!r}); convert the file to UTF-8") from None


def detect_layout(path):
    """``blank_line`` when a blank line separates two non-blank lines in the first
    :data:`AUTO_LINES` lines, else ``line`` (one document per line)."""
    seen_text, blank_after_text = False, False
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh):
            if n >= AUTO_LINES:
                break
            if raw.strip():
                if blank_after_text:
                    return "blank_line"
                seen_text = True
            elif seen_text:
                blank_after_text = True
    return "line"


def read_documents(path, options):
    """Reader ``documents``: one record per document, ``{"text", "path", "span", "encoding"}``.

    ``span`` is ``(byte offset, byte length)`` of the document in the file. Options:
    ``layout`` (``auto``: blank-line-separated documents if the file has blank lines
    between text, else one document per line; ``blank_line``; ``line``) and ``encoding``.
    """
    for key in options:
        if key not in ("layout", "encoding"):
            raise DataError(f"{path}: data.reader_options: unknown option {key!r}; allowed: layout, encoding")
    layout = options.get("layout", "auto")
    if layout not in LAYOUTS:
        raise DataError(f"{path}: data.reader_options.layout: {layout!r} is not allowed; "
                        f"use one of {', '.join(LAYOUTS)}")
    encoding = options.get("encoding", "utf-8")
    if layout == "auto":
        layout = detect_layout(path)
    start = first_line = None
    parts = []
    offset = 0
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, 1):
            here, offset = offset, offset + len(raw)
            if n == 1 and raw.startswith(b"\xef\xbb\xbf"):   # a BOM is not text
                raw, here = raw[3:], here + 3
            text = _decode(raw, path, n, encoding).rstrip("\r\n")
            if text.strip():
                if start is None:
                    start, first_line = here, n
                parts.append(text)
                if layout == "line":
                    yield n, {"text": text, "path": path, "span": (start, offset - start),
                              "encoding": encoding}
                    start, parts = None, []
            elif start is not None:   # a blank line ends a blank_line document
                yield first_line, {"text": "\n".join(parts), "path": path,
                                   "span": (start, here - start), "encoding": encoding}
                start, parts = None, []
    if start is not None:
        yield first_line, {"text": "\n".join(parts), "path": path,
                           "span": (start, offset - start), "encoding": encoding}


# A sentence ends at . ! or ? (and closing quotes/brackets), before white space and a
# capital letter, a digit or an opening quote. Abbreviations and initials do not end one.
_BOUNDARY = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*\s+(?=[\"'\u201c\u2018(\[]?[A-Z0-9])")
ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st mt ft vs etc e.g i.e cf al inc ltd co corp gen col lt sgt "
    "capt rev gov sen rep jan feb mar apr jun jul aug sep sept oct nov dec no fig vol pp".split())


def split_sentences(text):
    """Split one paragraph into sentences with a conservative rule: break after ``.!?``
    followed by space and a capital/digit, except after an abbreviation or an initial."""
    out, start = [], 0
    for m in _BOUNDARY.finditer(text):
        before = text[start:m.start() + 1].rsplit(None, 1)[-1].rstrip(".").lower()
        if text[m.start()] == "." and (before in ABBREVIATIONS or (len(before) == 1 and before.isalpha())):
            continue
        sentence = text[start:m.end()].strip()
        if sentence:
            out.append(sentence)
        start = m.end()
    tail = text[start:].strip()
    if tail:
        out.append(tail)
    return out


def document_sentences(text, mode):
    """The sentences of a document: every non-blank line split by :func:`split_sentences`
    (``mode='regex'``) or taken whole (``mode='lines'``)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line:
            out.extend(split_sentences(line) if mode == "regex" else [line])
    return out


def document_texts(examples):
    """Yield each example's text: read back from its file's byte range when the example
    holds a ``span`` (reader ``documents``), from its dataset row when it holds ``rows``
    (a memory-mapped ``datasets`` source), else its ``text``."""
    if examples and "rows" in examples[0]:
        from taskbert_plugins.hf_datasets import read_back

        yield from read_back(examples, examples[0]["column"])
        return
    handles = {}
    try:
        for ex in examples:
            if "span" not in ex:
                yield ex["text"]
                continue
            fh = handles.get(ex["path"])
            if fh is None:
                fh = handles[ex["path"]] = open(ex["path"], "rb")
            offset, length = ex["span"]
            fh.seek(offset)
            yield _decode(fh.read(length), ex["path"], ex["where"].rsplit(":", 1)[-1],
                          ex.get("encoding", "utf-8"))
    finally:
        for fh in handles.values():
            fh.close()
