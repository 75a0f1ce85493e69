"""Reading data files into examples and encoding them into feature rows.

Readers turn a file into ``(line_number, record)`` pairs; the task turns records into
examples; ``encode`` turns examples into rows of token ids. All problems surface as a
one-line :class:`DataError` naming the file and line, before any model loads.
"""

import difflib
import errno
import functools
import hashlib
import os
import stat
import time

from ..errors import DataError

EXTENSION_FORMATS = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv", ".txt": "text",
    ".parquet": "parquet", ".arrow": "arrow",
}
#: the reader of a folder given as a data source (a ``datasets`` ``save_to_disk`` folder)
FOLDER_FORMAT = "datasets"
#: extensions whose format no task default overrides (they say what the file holds)
TABULAR_EXTENSIONS = (".jsonl", ".ndjson", ".csv", ".tsv", ".parquet", ".arrow")


def file_sha256(path):
    """Hex SHA-256 of a file's bytes (for the manifest and cache keys). Remembered by path,
    size and mtime, so a run that hashes a corpus for its manifest and again for a cache key
    reads it once, and a file that changes is read again."""
    info = os.stat(path)
    # a file written in the last seconds may be written again within the same mtime tick
    # (same size, same mtime): hash it afresh each time until it is older than that
    if time.time_ns() - info.st_mtime_ns < 2_000_000_000:
        return _read_sha256(path)
    return _remembered_sha256(os.path.abspath(path), info.st_size, info.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _remembered_sha256(path, size, mtime_ns):
    return _read_sha256(path)


def _read_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def choose_format(path, spec_format, task, readers):
    """The reader name for ``path``: the spec's ``data.format``, the task's default
    for unknown extensions, or a guess from the extension."""
    from .sources import HUB_FORMAT, is_hub

    if is_hub(path):
        return HUB_FORMAT
    if spec_format:
        return spec_format
    ext = os.path.splitext(path)[1].lower()
    if os.path.isdir(path) and ext not in EXTENSION_FORMATS:   # "x.jsonl/" stays a misnamed folder
        return FOLDER_FORMAT
    if task.default_format and ext not in TABULAR_EXTENSIONS:
        return task.default_format
    if ext in EXTENSION_FORMATS:
        return EXTENSION_FORMATS[ext]
    raise DataError(
        f"{path}: cannot tell the format from the extension {ext or '(none)'!r}; "
        f"set data.format to one of: {', '.join(readers.names())}"
    )


def _near(path):
    """`` (did you mean NAME?)`` for a file of a close name in the same folder."""
    folder, name = os.path.split(path)
    try:
        found = [f for f in os.listdir(folder or ".") if os.path.isfile(os.path.join(folder or ".", f))]
    except OSError:
        return ""
    close = difflib.get_close_matches(name, found, n=1, cutoff=0.8)
    return f" (did you mean {close[0]}?)" if close else ""


def check_file(path, key):
    """Raise DataError unless ``path`` is a readable, non-empty regular file."""
    try:
        info = os.stat(path)
    except (OSError, ValueError) as exc:   # ELOOP: os.path.exists calls a loop "not found"
        if isinstance(exc, ValueError):   # a NUL in the path
            raise DataError(f"{key}: {path} is not a file path (it holds a NUL character)") from None
        if exc.errno == errno.ELOOP:
            raise DataError(f"{key}: {path} is a symlink loop (its links lead back to themselves); "
                            f"expected a data file") from None
        raise DataError(f"{key}: file not found: {path}{_near(path)}") from None
    if stat.S_ISDIR(info.st_mode):
        raise DataError(f"{key}: {path} is a folder, expected a data file")
    if not stat.S_ISREG(info.st_mode):   # a FIFO or device reports size 0 and may never end
        raise DataError(f"{key}: {path} is not a regular file (a pipe, socket or device); "
                        f"expected a data file")
    if info.st_size == 0:
        raise DataError(f"{key}: {path} is empty")


def read_examples(path, fmt, task, readers, reader_options=None, limit=None,
                  labelled=True, key="data", notes=None):
    """Read ``path`` with reader ``fmt`` and return the task's examples (at most ``limit``).

    Records the task skips with a :class:`~taskbert.task.Skip` are counted per reason; with
    a ``notes`` list, one line per reason is appended to it."""
    from ..task import Skip

    reader = readers.get(fmt, where=f"{key}: format")
    # a reader of folders or hub datasets checks its source itself (one line, listing what exists)
    getattr(reader, "check_source", check_file)(path, key)
    examples, skipped = [], {}
    records = reader(path, dict(reader_options or {}))
    for line_no, record in records:
        where = f"{path}:{line_no}"
        example = task.example_from_record(record, where, labelled=labelled)
        if isinstance(example, Skip):
            skipped[example.reason] = skipped.get(example.reason, 0) + 1
            continue
        if example is None:  # the task left it out without a word (e.g. a blank text)
            continue
        examples.append(example)
        if limit is not None and len(examples) >= limit:
            break
    if notes is not None:
        notes.extend(f"{path}: skipped {n} records {reason}" for reason, n in skipped.items())
    if not examples:
        raise DataError(f"{path}: holds no usable examples")
    names = getattr(records, "label_names", None)   # e.g. a datasets ClassLabel column's classes
    if names:
        task.data_labels(dict(names))
    return examples


def load_splits(spec, task, readers, notes=None):
    """``{split: examples}`` for every split the spec names, checked and set up; what the
    task skipped is appended to ``notes`` (see :func:`read_examples`)."""
    splits = spec.data.splits()
    if "train" not in splits and "validation" not in splits and "test" not in splits:
        raise DataError(f"{spec.path}: data: no split given; set data.train (and data.validation)")
    examples = {}
    for split, path in splits.items():
        fmt = choose_format(path, spec.data.format, task, readers)
        examples[split] = read_examples(
            path, fmt, task, readers, spec.data.reader_options,
            limit=getattr(spec.data.limit, split), key=f"data.{split}", notes=notes,
        )
    task.setup(examples)
    return examples


def encode_split(task, examples, tokenizer, max_length, split=None):
    """Feature rows for a split, each with ``example_index`` and ``feature_index``.

    ``split`` ("train", "validation", "test"; None for inputs to predict) reaches a task
    whose ``encode_all`` takes a ``split`` keyword (an encoding that differs for training)."""
    from ..task import takes

    kwargs = {"split": split} if takes(task.encode_all, "split") else {}
    rows = task.encode_all(examples, tokenizer, max_length, **kwargs)
    for i, row in enumerate(rows):
        row["feature_index"] = i
    return rows
