"""The on-disk feature cache: one folder per (model, layers, pooling, tokenizer, data) key.

A cache folder holds ``features.npy`` (all units of a split, ``(units, layers, hidden)``,
memory-mapped on open), ``offsets.npy`` (row ``i`` owns units ``offsets[i]:offsets[i+1]``)
and ``manifest.json`` (the full key, shapes, and each file's size and SHA-256). The folder
name is a digest of the key, so any change of model weights, layers, pooling, max_length,
tokenizer, data file or encoded rows makes a new cache. Folders are built under a
temporary name and renamed into place; on open every file is checked against the manifest,
and a torn or altered cache is rebuilt rather than trusted.
"""

import hashlib
import json
import os
import shutil
import sys
import time

import numpy as np
import torch

from taskbert import EvalLoader, file_sha256, new_temp_folder, swap_in

from .heads import extract_batch

CACHE_FORMAT = 1
FILES = ("features.npy", "offsets.npy")


class CacheDamaged(Exception):
    """A cache folder that cannot be trusted (the message says why)."""


def default_cache_dir():
    """``$TASKBERT_FEATURE_CACHE``, else ``$XDG_CACHE_HOME/taskbert/features``
    (``~/.cache/taskbert/features``)."""
    if os.environ.get("TASKBERT_FEATURE_CACHE"):
        return os.environ["TASKBERT_FEATURE_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "taskbert", "features")


def weights_fingerprint(module):
    """SHA-256 over every parameter and buffer (name, dtype, shape, bytes): a changed
    weight makes a new cache even when the model's path stays the same."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer):
    """SHA-256 of the fast tokenizer's full JSON (vocabulary, normaliser, templates)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def rows_fingerprint(rows):
    """SHA-256 of what the encoder sees and how units are pooled: ids, segments, spans."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps([row["input_ids"], row.get("token_type_ids"), row["unit_spans"]]).encode())
    return digest.hexdigest()


def key_digest(key):
    """The folder name of a cache key (a dict of JSON values)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


class FeatureStore:
    """An opened, verified cache: ``features`` (memory-mapped) and ``offsets``."""

    def __init__(self, folder, manifest):
        self.folder, self.manifest = folder, manifest
        # copy-on-write mapping: pages load on demand and torch accepts the array as writable
        self.features = np.load(os.path.join(folder, "features.npy"), mmap_mode="c")
        self.offsets = np.load(os.path.join(folder, "offsets.npy"))
        self._tensor = torch.from_numpy(self.features)

    def __len__(self):
        return len(self.offsets) - 1

    def row(self, i):
        """Units of row ``i``: a ``(units, layers, hidden)`` tensor view (no copy)."""
        return self._tensor[int(self.offsets[i]):int(self.offsets[i + 1])]


def open_store(folder, key):
    """Open and verify a cache folder against ``key``; raise CacheDamaged naming the fault."""
    path = os.path.join(folder, "manifest.json")
    if not os.path.exists(path):
        raise CacheDamaged("no manifest.json (an interrupted write)")
    try:
        with open(path, encoding="utf-8") as fh:
            manifest = json.load(fh)
    except (OSError, ValueError) as exc:
        raise CacheDamaged(f"manifest.json unreadable: {exc}") from None
    if manifest.get("key") != key:
        raise CacheDamaged("manifest key differs from the expected key")
    for name in FILES:
        f = os.path.join(folder, name)
        want = manifest["files"].get(name, {})
        if not os.path.exists(f):
            raise CacheDamaged(f"{name} is missing")
        if os.path.getsize(f) != want.get("bytes"):
            raise CacheDamaged(f"{name} has {os.path.getsize(f)} bytes, the manifest says {want.get('bytes')}")
        if file_sha256(f) != want.get("sha256"):
            raise CacheDamaged(f"{name} does not match its SHA-256 in the manifest")
    store = FeatureStore(folder, manifest)
    if list(store.features.shape) != manifest["shape"] or len(store) != manifest["rows"]:
        raise CacheDamaged(f"features.npy shape {list(store.features.shape)} differs from the manifest")
    return store


def extract_rows(encoder, rows, layer_ids, pooling, batch_size, pad_id, pad_fields, out, offsets,
                 device):
    """One encoder pass over ``rows`` (length-sorted batches), writing each row's pooled
    units into ``out`` (an array ``(units, layers, hidden)``) at ``offsets``."""
    for idx, batch in EvalLoader(rows, batch_size, pad_id, pad_fields, device=device):
        for i, units in zip(idx, extract_batch(encoder, batch, layer_ids, pooling)):
            out[offsets[i]:offsets[i + 1]] = units.float().cpu().numpy()


def build_store(folder, key, encoder, rows, layer_ids, pooling, batch_size, pad_id,
                pad_fields, device, dtype="float32"):
    """Extract features for ``rows`` and write a verified cache folder atomically."""
    hidden = encoder.config.hidden_size
    counts = [len(r["unit_spans"]) for r in rows]
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    shape = (int(offsets[-1]), len(layer_ids), hidden)
    tmp = new_temp_folder(folder)
    try:
        t0 = time.perf_counter()
        feats = np.lib.format.open_memmap(os.path.join(tmp, "features.npy"), mode="w+",
                                          dtype=np.dtype(dtype), shape=shape)
        extract_rows(encoder, rows, layer_ids, pooling, batch_size, pad_id, pad_fields, feats,
                     offsets, device)
        feats.flush()
        del feats
        seconds = time.perf_counter() - t0
        np.save(os.path.join(tmp, "offsets.npy"), offsets)
        files = {name: {"bytes": os.path.getsize(os.path.join(tmp, name)),
                        "sha256": file_sha256(os.path.join(tmp, name))} for name in FILES}
        manifest = {"format": CACHE_FORMAT, "key": key, "rows": len(rows), "shape": list(shape),
                    "dtype": dtype, "files": files, "extract_seconds": round(seconds, 3),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        with open(os.path.join(tmp, "manifest.json"), "w", encoding="utf-8") as fh:
            json.dump(manifest, fh, indent=2)
        swap_in(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return FeatureStore(folder, manifest), seconds   # just verified by construction


def ensure_store(root, key, build, log=None):
    """The verified cache for ``key`` under ``root``, built by ``build(folder)`` when it is
    missing or damaged. Returns ``(store, seconds spent extracting or None if reused)``."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    folder = os.path.join(root, key_digest(key))
    if os.path.isdir(folder):
        try:
            return open_store(folder, key), None
        except CacheDamaged as exc:
            log(f"warning: feature cache {folder} is damaged ({exc}); rebuilding it")
            shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(root, exist_ok=True)
    return build(folder)


def google_layer_index(index, num_layers):
    """extract_features.py numbers layers from the top: -1 is the last, and the
    embeddings are ``-(num_layers + 1)``."""
    return index - num_layers - 1


def export_jsonl(path, store, rows, examples, unit_names, layer_ids, num_layers, decimals=6):
    """Write the cache as google-research/bert ``extract_features.py`` JSONL: one line per
    example ``{"linex_index", "features": [{"token", "layers": [{"index", "values"}]}]}``.

    ``unit_names(row, example)`` names each unit of a row (a word, or ``[CLS]`` for a
    sentence); the rows of one example (windows) are joined in order. Written to a
    temporary file and renamed, so the file is complete or absent.
    """
    indexes = [google_layer_index(i, num_layers) for i in layer_ids]
    by_example = {}
    for i, row in enumerate(rows):
        by_example.setdefault(row["example_index"], []).append(i)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = path + ".tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            for ex_index in sorted(by_example):
                units = []
                for i in by_example[ex_index]:
                    values = store.row(i).float().numpy()   # (units, layers, hidden)
                    for name, unit in zip(unit_names(rows[i], examples[ex_index]), values):
                        units.append({"token": name, "layers": [
                            {"index": idx, "values": [round(float(v), decimals) for v in vec]}
                            for idx, vec in zip(indexes, unit)]})
                fh.write(json.dumps({"linex_index": ex_index, "features": units}, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    os.replace(tmp, path)
    return len(by_example)
