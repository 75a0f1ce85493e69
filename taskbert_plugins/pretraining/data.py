"""Pretraining data: documents -> sentences -> token ids -> A/B instances -> masked shards.

Built once per cache key and memory-mapped afterwards. The build streams: documents are
read back from disk a batch at a time, tokenized, and appended to a token store on disk
(``docs/``); instances are then cut from that store, masked, and written in shards of
``shard_size`` instances (``shard-NNNNN/*.npy``). ``meta.json`` is written last and the
folder is renamed into place, so a cache folder is complete or absent. Memory stays at
one batch of documents plus one shard, whatever the corpus size.

Instance layout (``index.npy`` columns): token offset, length, ``a_len`` (positions of
``[CLS] A [SEP]``; token type 1 starts there), NSP label (0 = B follows A, 1 = B is from
another document, -1 = no NSP), document of A, document of B (-1 = none).
"""

import dataclasses
import hashlib
import json
import os
import random
import shutil
from dataclasses import dataclass

import numpy as np

from taskbert import DataError, file_sha256, source_identity, temp_folder

from .instances import mlm_instances, nsp_instances
from .masking import choose_masks
from .text import document_sentences, document_texts

FORMAT_VERSION = 1
INDEX_COLUMNS = ("offset", "length", "a_len", "nsp_label", "doc_a", "doc_b")


@dataclass(frozen=True)
class BuildConfig:
    """Everything that decides the content of the pretraining data (part of the cache key)."""

    max_length: int
    nsp: bool = True
    short_seq_prob: float = 0.1
    dupe_factor: int = 1
    mask_prob: float = 0.15
    max_predictions: int = 20
    whole_word: bool = False
    mask_share: float = 0.8
    random_share: float = 0.1
    sentence_split: str = "regex"
    seed: int = 12345
    shard_size: int = 100_000


# ------------------------------------------------------------------ cache keys
def content_fingerprint(examples):
    """SHA-256 over the files' contents and the documents taken from them (byte ranges),
    or over the texts of in-memory examples."""
    digest = hashlib.sha256()
    files = {}
    for ex in examples:
        if "rows" in ex:   # a datasets row: the source's SHA-256 or fingerprint, then the row
            if ex["rows"] not in files:
                files[ex["rows"]] = json.dumps(source_identity(ex["rows"][1]), sort_keys=True)
                digest.update(f"rows {files[ex['rows']]}\n".encode())
            digest.update(f"{ex['row']};".encode())
        elif "span" in ex:
            if ex["path"] not in files:
                files[ex["path"]] = file_sha256(ex["path"])
                digest.update(f"file {files[ex['path']]}\n".encode())
            digest.update(f"{ex['span'][0]},{ex['span'][1]};".encode())
        else:
            digest.update(ex["text"].encode("utf-8") + b"\0")
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer):
    """SHA-256 of the tokenizer's full definition (vocabulary, normalizer, specials)."""
    return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode("utf-8")).hexdigest()


def cache_key(examples, tokenizer, config):
    """``(key, inputs)``: a short hex key and the JSON-able inputs it hashes."""
    inputs = {"version": FORMAT_VERSION, "content": content_fingerprint(examples),
              "tokenizer": tokenizer_fingerprint(tokenizer), "config": dataclasses.asdict(config)}
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:24]
    return key, inputs


# -------------------------------------------------------- tokenized documents
class DocStore:
    """Token ids of every sentence of every document, in chunked ``.npy`` files.

    Written by :meth:`add` (one document at a time) and :meth:`close`; read with
    :meth:`sentences` from memory-mapped chunks.
    """

    def __init__(self, folder, dtype, chunk_tokens=1 << 22):
        self.folder, self.dtype, self.chunk_tokens = folder, dtype, chunk_tokens
        os.makedirs(folder, exist_ok=True)
        self._sents, self._ntok, self._chunk_docs = [], 0, []
        self.doc_chunk, self.doc_first, self.doc_count = [], [], []
        self.chunks = []

    def add(self, sentences):
        """Append one document (a list of int sequences, one per sentence)."""
        self.doc_chunk.append(len(self.chunks))
        self.doc_first.append(len(self._sents))
        self.doc_count.append(len(sentences))
        for s in sentences:
            self._sents.append(np.asarray(s, dtype=self.dtype))
            self._ntok += len(s)
        if self._ntok >= self.chunk_tokens:
            self._flush()

    def _flush(self):
        if not self._sents:
            return
        n = len(self.chunks)
        bounds = np.zeros(len(self._sents) + 1, dtype=np.int64)
        np.cumsum([len(s) for s in self._sents], out=bounds[1:])
        np.save(os.path.join(self.folder, f"tokens-{n}.npy"), np.concatenate(self._sents))
        np.save(os.path.join(self.folder, f"bounds-{n}.npy"), bounds)
        self.chunks.append(None)
        self._sents, self._ntok = [], 0

    def close(self):
        """Finish writing and open the chunks memory-mapped for reading."""
        self._flush()
        self.chunks = [(np.load(os.path.join(self.folder, f"tokens-{n}.npy"), mmap_mode="r"),
                        np.load(os.path.join(self.folder, f"bounds-{n}.npy"), mmap_mode="r"))
                       for n in range(len(self.chunks))]
        self.doc_chunk = np.asarray(self.doc_chunk, dtype=np.int32)
        self.doc_first = np.asarray(self.doc_first, dtype=np.int64)
        self.doc_count = np.asarray(self.doc_count, dtype=np.int64)
        return self

    def sentences(self, doc):
        """The sentences of document ``doc`` as arrays (views into the chunk)."""
        tokens, bounds = self.chunks[self.doc_chunk[doc]]
        first = self.doc_first[doc]
        return [tokens[bounds[i]:bounds[i + 1]] for i in range(first, first + self.doc_count[doc])]


def tokenized_documents(examples, tokenizer, mode, batch_docs=256):
    """Yield each document as a list of sentences' token ids (no special tokens), reading
    and tokenizing ``batch_docs`` documents at a time."""
    from tokenizers import Tokenizer

    # a copy without the saved truncation/padding (MiniLM's tokenizer.json pads to 128)
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_truncation()
    backend.no_padding()

    def encode(docs):
        flat = [s for doc in docs for s in doc]
        encoded = iter(backend.encode_batch(flat, add_special_tokens=False)) if flat else iter(())
        for doc in docs:
            yield [ids for ids in (next(encoded).ids for _ in doc) if ids]

    docs = []
    for text in document_texts(examples):
        docs.append(document_sentences(text, mode))
        if len(docs) >= batch_docs:
            yield from encode(docs)
            docs = []
    yield from encode(docs)


def tokenize_documents(examples, tokenizer, store, mode):
    """Split every document into sentences, tokenize them in batches, fill ``store``."""
    for sentences in tokenized_documents(examples, tokenizer, mode):
        store.add(sentences)
    return store.close()


# ------------------------------------------------------------------ instances
class ShardWriter:
    """Collects instances and writes them as ``shard-NNNNN/{tokens,index,mlm_pos,mlm_ids}.npy``."""

    def __init__(self, folder, dtype, config):
        self.folder, self.dtype, self.config = folder, dtype, config
        self.names, self.count = [], 0
        self._reset()

    def _reset(self):
        self.tokens, self.index, self.mlm = [], [], []
        self.offset = 0

    def add(self, ids, a_len, nsp_label, doc_a, doc_b, positions, inputs):
        """Append one instance (``ids`` with special tokens, and its static masks)."""
        self.tokens.append(ids.astype(self.dtype))
        self.index.append((self.offset, len(ids), a_len, nsp_label, doc_a, doc_b))
        self.mlm.append((positions, inputs))
        self.offset += len(ids)
        self.count += 1
        if len(self.index) >= self.config.shard_size:
            self.flush()

    def flush(self):
        """Write the buffered instances as one shard."""
        if not self.index:
            return
        name = f"shard-{len(self.names):05d}"
        folder = os.path.join(self.folder, name)
        os.makedirs(folder)
        n, width = len(self.index), self.config.max_predictions
        pos = np.full((n, width), -1, dtype=np.int32)
        val = np.full((n, width), -1, dtype=np.int32)
        for i, (p, v) in enumerate(self.mlm):
            pos[i, :len(p)] = p
            val[i, :len(v)] = v
        np.save(os.path.join(folder, "tokens.npy"), np.concatenate(self.tokens))
        np.save(os.path.join(folder, "index.npy"), np.asarray(self.index, dtype=np.int64))
        np.save(os.path.join(folder, "mlm_pos.npy"), pos)
        np.save(os.path.join(folder, "mlm_ids.npy"), val)
        self.names.append(name)
        self._reset()


def write_instances(store, tables, config, writer, seed):
    """Cut, mask and write every instance (``dupe_factor`` passes over the documents,
    each with fresh pairings and masks)."""
    rng = random.Random(seed)
    np_rng = np.random.default_rng(seed + 1)
    docs = np.flatnonzero(store.doc_count > 0)
    cls_, sep = np.array([tables.cls_id]), np.array([tables.sep_id])
    owed = [0]
    for _ in range(config.dupe_factor):
        for doc in docs.tolist():
            if config.nsp:
                pieces = ((np.concatenate([cls_, a, sep, b, sep]), len(a) + 2, label, doc_b)
                          for a, b, label, doc_b in nsp_instances(doc, store, docs, rng, config, owed))
            else:
                pieces = ((np.concatenate([cls_, a, sep]), len(a) + 2, -1, -1)
                          for a in mlm_instances(doc, store, rng, config))
            for ids, a_len, label, doc_b in pieces:
                ids = ids.astype(np.int64)
                positions, inputs = choose_masks(
                    ids, np_rng, tables, config.mask_prob, config.max_predictions,
                    config.whole_word, config.mask_share, config.random_share)
                writer.add(ids, a_len, label, doc, doc_b, positions, inputs)
    writer.flush()


def build(examples, tokenizer, tables, config, cache_dir, where="data"):
    """The cache folder for these examples: reused when ``meta.json`` is there, else built
    in a temporary folder and renamed into place. Returns ``(folder, built)``."""
    key, inputs = cache_key(examples, tokenizer, config)
    folder = os.path.join(cache_dir, key)
    if os.path.exists(os.path.join(folder, "meta.json")):
        return folder, False
    if os.path.isdir(folder):   # not ours to trust: no meta.json means it never finished
        shutil.rmtree(folder)
    os.makedirs(cache_dir, exist_ok=True)
    tmp = temp_folder(f".{key}.tmp-", cache_dir)
    try:
        dtype = np.uint16 if max(len(tokenizer), len(tables.special)) <= 65535 else np.int32
        store = tokenize_documents(examples, tokenizer, DocStore(os.path.join(tmp, "docs"), dtype),
                                   config.sentence_split)
        nonempty = int((store.doc_count > 0).sum())
        if config.nsp and nonempty < 2:
            raise DataError(f"{where}: next-sentence prediction needs at least 2 documents with "
                            f"text, found {nonempty}; add documents or set task_options.nsp: false")
        writer = ShardWriter(tmp, dtype, config)
        write_instances(store, tables, config, writer, int(key[:12], 16))
        store.chunks = []   # drop the memory maps before deleting their files
        shutil.rmtree(os.path.join(tmp, "docs"))
        meta = {"version": FORMAT_VERSION, "key": key, "instances": writer.count,
                "documents": len(store.doc_count), "shards": writer.names,
                "dtype": np.dtype(dtype).name, "index_columns": list(INDEX_COLUMNS),
                "inputs": inputs}
        with open(os.path.join(tmp, "meta.json"), "w", encoding="utf-8") as fh:
            json.dump(meta, fh, indent=2)
        try:
            os.replace(tmp, folder)
        except OSError:   # another process built the same key meanwhile: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder, True


def open_shards(folder):
    """``(meta, shards)``: each shard a dict of memory-mapped arrays."""
    with open(os.path.join(folder, "meta.json"), encoding="utf-8") as fh:
        meta = json.load(fh)
    shards = []
    for name in meta["shards"]:
        shards.append({k: np.load(os.path.join(folder, name, f"{k}.npy"), mmap_mode="r")
                       for k in ("tokens", "index", "mlm_pos", "mlm_ids")})
    return meta, shards
