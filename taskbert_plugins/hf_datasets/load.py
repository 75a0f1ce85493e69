"""Opening a data source with the Hugging Face ``datasets`` library, with one-line errors.

Every source opens as a memory-mapped ``datasets.Dataset`` (Arrow on disk, read a batch at a
time), except Parquet, which pyarrow reads a row group at a time: nothing is loaded whole.

* ``hub``: ``{hub: NAME, config:, split:, revision:}`` through ``datasets.load_dataset``; with
  ``HF_HUB_OFFLINE`` / ``TASKBERT_OFFLINE`` only the local ``datasets`` cache is read;
* ``datasets``: a folder written by ``Dataset.save_to_disk`` (``datasets.load_from_disk``);
* ``arrow``: one Arrow file as ``datasets`` writes them (``Dataset.from_file``);
* ``parquet``: a Parquet file (``pyarrow.parquet.ParquetFile``).

Why ``datasets`` and not hand-written Arrow code: it knows the hub, its cache and offline
mode, and it keeps the feature types (``ClassLabel`` names) in the files it writes.
"""

import bisect
import contextlib
import functools
import itertools
import os

from taskbert import DataError

INSTALL = "pip install 'taskbert[datasets]'"


def require(what):
    """The ``datasets`` module, quiet; one line naming the extra when it is not installed."""
    try:
        import datasets
    except ImportError:
        raise DataError(f"{what}: reading it needs the Hugging Face datasets library: {INSTALL}") from None
    datasets.disable_progress_bars()
    datasets.utils.logging.set_verbosity_error()   # its cache notes are not the user's business
    return datasets


def offline():
    """True when the hub must not be contacted (as for models: ``taskbert.encoder``)."""
    return any(os.environ.get(v, "").lower() not in ("", "0", "false")
               for v in ("HF_HUB_OFFLINE", "TASKBERT_OFFLINE"))


def _one_line(exc):
    """An exception's message as one line (``datasets`` writes several)."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__


def check_folder(path, key):
    """A ``save_to_disk`` folder of one split; a DatasetDict folder is refused, naming its splits."""
    if not os.path.exists(path):
        raise DataError(f"{key}: folder not found: {path}")
    if not os.path.isdir(path):
        raise DataError(f"{key}: {path} is a file; format 'datasets' reads a folder written by save_to_disk")
    if os.path.exists(os.path.join(path, "dataset_dict.json")):
        splits = sorted(e for e in os.listdir(path) if os.path.isdir(os.path.join(path, e)))
        wanted = key.rpartition(".")[2]   # data.train -> the train split, where there is one
        example = wanted if wanted in splits else (splits[0] if splits else "train")
        raise DataError(f"{key}: {path} holds a DatasetDict with splits {', '.join(splits) or 'none'}; "
                        f"point {key} at one of them, e.g. {os.path.join(path, example)}")
    if not os.path.exists(os.path.join(path, "state.json")):
        raise DataError(f"{key}: {path} is a folder, but not one written by datasets' save_to_disk "
                        f"(it has no state.json); give a data file or a save_to_disk folder")


def open_dataset(fmt, source):
    """The ``datasets.Dataset`` of a source (``fmt`` one of hub, datasets, arrow), memory-mapped."""
    datasets = require(str(source))
    if fmt == "hub":
        return _hub(source, str(datasets.config.HF_DATASETS_CACHE))
    if fmt == "datasets":
        return datasets.load_from_disk(source)
    if fmt == "arrow":
        try:
            return datasets.Dataset.from_file(source)
        except Exception as exc:   # pyarrow's ArrowInvalid and kin: not an Arrow stream
            raise DataError(f"{source}: not an Arrow file as datasets writes them ({_one_line(exc)}); "
                            f"for Parquet use the .parquet extension or data.format: parquet") from None
    raise ValueError(f"not a datasets format: {fmt!r}")


@functools.lru_cache(maxsize=8)   # the check, the reader, the manifest and read-back each open it
def _hub(source, cache):
    return load_hub(require(str(source)), source)


def load_hub(datasets, source):
    """``datasets.load_dataset`` for a HubSource; every failure one line listing what exists."""
    kwargs = {"split": source.split, "revision": source.revision}
    if int(datasets.__version__.split(".")[0]) < 4:   # 4.0 dropped loading scripts altogether
        kwargs["trust_remote_code"] = source.trust_remote_code
    try:
        with _offline_if_asked(datasets):
            return datasets.load_dataset(source.hub, source.config, **kwargs)
    except ValueError as exc:   # unknown split or config: datasets' message lists the known ones
        raise DataError(f"{source}: {_one_line(exc)}") from None
    except ConnectionError as exc:
        why = ("offline mode is on (HF_HUB_OFFLINE / TASKBERT_OFFLINE) and it is not in the local datasets "
               "cache; load it once online" if offline() else _one_line(exc))
        raise DataError(f"{source}: {why}") from None
    except FileNotFoundError as exc:
        raise DataError(f"{source}: {_one_line(exc)}") from None
    except RuntimeError as exc:
        if "script" in str(exc).lower():
            raise DataError(f"{source}: this dataset runs a loading script, which the installed datasets "
                            f"{datasets.__version__} no longer runs; use a Parquet revision of it "
                            f"(revision: refs/convert/parquet)") from None
        raise
    except Exception as exc:   # DatasetNotFoundError, gated repos, a revision that does not exist
        if type(exc).__module__.startswith(("datasets", "huggingface_hub")):
            raise DataError(f"{source}: {_one_line(exc)}") from None
        raise


@contextlib.contextmanager
def _offline_if_asked(datasets):
    """``datasets`` and ``huggingface_hub`` read ``HF_HUB_OFFLINE`` once, on import; honour
    ``TASKBERT_OFFLINE`` (or a later ``HF_HUB_OFFLINE``) by setting their switches for the call."""
    import huggingface_hub.constants as hub_constants

    if not offline():
        yield
        return
    saved = datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE = saved


def check_hub(source, key):
    """Open a hub source now (first use downloads it), so a bad name fails before any weights
    load; the error names the spec key too."""
    try:
        open_dataset("hub", source)
    except DataError as exc:
        raise DataError(f"{key}: {exc}") from None


def dataset_batches(ds, size=1000):
    """Yield the rows of a ``datasets.Dataset`` as dicts, ``size`` rows read at a time."""
    for start in range(0, len(ds), size):
        batch = ds[start:start + size]   # one dict of columns, decoded by the dataset's features
        columns = list(batch)
        for values in zip(*(batch[c] for c in columns)):
            yield dict(zip(columns, values))


def parquet_rows(path):
    """``(features, rows)`` of a Parquet file: its ``datasets`` features (ClassLabel names when
    datasets wrote it) and an iterator of row dicts, one record batch at a time."""
    datasets = require(path)
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(path)
    except Exception as exc:   # pyarrow.ArrowInvalid: not Parquet
        raise DataError(f"{path}: not a Parquet file ({_one_line(exc)})") from None
    features = datasets.Features.from_arrow_schema(handle.schema_arrow)

    def rows():
        for batch in handle.iter_batches(batch_size=1000):
            yield from batch.to_pylist()
    return features, rows()


def chunk_reader(fmt, source, column, size=1000):
    """Open a source once; return ``read(row) -> (first row, values)``: ``column`` of the
    chunk that holds ``row``, ``size`` rows of a ``datasets.Dataset`` or one Parquet row group."""
    if fmt != "parquet":
        ds = open_dataset(fmt, source)
        return lambda row: (row, ds[row:row + size][column])
    import pyarrow.parquet as pq

    handle = pq.ParquetFile(source)
    sizes = (handle.metadata.row_group(g).num_rows for g in range(handle.num_row_groups))
    starts = list(itertools.accumulate(sizes, initial=0))   # starts[-1]: the file's row count

    def read(row):
        if row >= starts[-1]:
            raise IndexError(f"{source}: row {row} is past its {starts[-1]} rows")
        g = bisect.bisect_right(starts, row) - 1   # the last group starting at or before row
        return starts[g], handle.read_row_group(g, columns=[column]).column(0).to_pylist()
    return read
