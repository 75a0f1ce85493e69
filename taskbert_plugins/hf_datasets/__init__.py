"""Readers for data in the Hugging Face ``datasets`` ecosystem (the optional extra
``taskbert[datasets]``): ``hub`` (a ``{hub: NAME, config:, split:, revision:}`` source),
``datasets`` (a ``save_to_disk`` folder), ``arrow`` and ``parquet`` files.

A record is one row as a dict of its columns, so the tasks' ``*_field`` options name
columns. ``ClassLabel`` values become their names (``1`` -> ``"positive"``), and so do
sequences of them (tags); the reader also hands the class names, in id order, to the task
(:meth:`taskbert.Task.data_labels`), so ``id2label`` follows the dataset. A row is named
``file:row N`` in errors, N counting from 0 as ``dataset[N]`` does. Rows are read a batch
at a time from memory-mapped Arrow (Parquet: a row group at a time), so ``data.limit`` stops
reading early and a pretraining corpus is never held as Python strings (:func:`read_back`).
"""

from taskbert import hookimpl
from taskbert_plugins.readers import check_options

from . import load


def _class_names(features):
    """``{column: [names]}`` for ClassLabel columns and sequences of ClassLabel."""
    from datasets import ClassLabel

    out = {}
    for column, feature in features.items():
        inner = getattr(feature, "feature", None)
        if isinstance(feature, ClassLabel):
            out[column] = list(feature.names)
        elif isinstance(inner, ClassLabel):
            out[column] = list(inner.names)
    return out


class Row(dict):
    """A record (a row's columns) that also knows where to read it again: ``row_ref`` is
    ``(format, source, index)``."""

    def __init__(self, values, row_ref):
        super().__init__(values)
        self.row_ref = row_ref


class Records:
    """What a reader returns: iterable of ``("row N", Row)``; ``label_names`` as
    :meth:`taskbert.Task.data_labels` takes them."""

    def __init__(self, features, rows, fmt, source):
        self.label_names = _class_names(features)
        self._rows, self._fmt, self._source = rows, fmt, source

    def _decode(self, row):
        for column, names in self.label_names.items():
            value = row.get(column)
            if isinstance(value, int):
                row[column] = names[value] if 0 <= value < len(names) else None   # -1: no label
            elif isinstance(value, list):
                row[column] = [names[v] if isinstance(v, int) and 0 <= v < len(names) else v for v in value]
        return row

    def __iter__(self):
        for n, values in enumerate(self._rows):
            yield f"row {n}", Row(self._decode(values), (self._fmt, self._source, n))


def _dataset_records(fmt, source, options):
    check_options(source, options, ())
    ds = load.open_dataset(fmt, source)
    return Records(ds.features, load.dataset_batches(ds), fmt, source)


def read_hub(source, options):
    """Reader ``hub``: a dataset on the hub or in the local ``datasets`` cache."""
    return _dataset_records("hub", source, options)


def read_datasets(path, options):
    """Reader ``datasets``: a folder written by ``Dataset.save_to_disk``."""
    return _dataset_records("datasets", path, options)


def read_arrow(path, options):
    """Reader ``arrow``: an Arrow file as ``datasets`` writes them (memory-mapped)."""
    return _dataset_records("arrow", path, options)


def read_parquet(path, options):
    """Reader ``parquet``: a Parquet file, one record batch at a time."""
    check_options(path, options, ())
    features, rows = load.parquet_rows(path)
    return Records(features, rows, "parquet", path)


def _hub_identity(source):
    """What the manifest records of a hub dataset besides its keys: its ``datasets`` fingerprint."""
    return {"fingerprint": load.open_dataset("hub", source)._fingerprint}


read_hub.check_source = load.check_hub
read_hub.identity = _hub_identity
read_datasets.check_source = load.check_folder


def read_back(examples, column):
    """Yield each example's ``column`` from the source its ``rows`` names (``(format,
    source)``) at row ``row``: 1000 consecutive rows at a time from an Arrow memory map, one
    row group at a time from Parquet, so only that much is ever in memory. Each source is
    opened once per call."""
    readers, chunk, key, start = {}, [], None, 0
    for ex in examples:
        i = ex["row"]
        if tuple(ex["rows"]) != key or not start <= i < start + len(chunk):
            key = tuple(ex["rows"])
            if key not in readers:
                readers[key] = load.chunk_reader(*key, column)
            start, chunk = readers[key](i)
        yield chunk[i - start]


@hookimpl
def taskbert_register_readers(register):
    register("hub", read_hub)
    register("datasets", read_datasets)
    register("arrow", read_arrow)
    register("parquet", read_parquet)
