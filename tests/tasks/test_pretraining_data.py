"""Pretraining data: masking statistics, NSP pairs, whole-word masking, shards and cache.

Statistics are measured over thousands of samples; each tolerance is stated next to it
(about 5 standard deviations of the sampling noise, so a correct build never fails and a
wrong share -- e.g. 20% chosen, or 70/15/15 -- always does).
"""

import math
import os

import numpy as np
import pytest
import torch

from taskbert.testing import make_tokenizer
from taskbert_plugins.pretraining import Pretraining, PretrainingOptions
from taskbert_plugins.pretraining.data import BuildConfig, build, open_shards
from taskbert_plugins.pretraining.masking import choose_masks, vocab_tables
from taskbert_plugins.pretraining.text import read_documents
from test_pretraining_text import LONG_WORDS, WORDS, documents, write_corpus


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer(WORDS)


def examples_of(path, layout="blank_line"):
    task = Pretraining(PretrainingOptions())
    return [task.example_from_record(r, f"{path}:{n}") for n, r in read_documents(str(path), {"layout": layout})]


def build_data(tmp_path, tokenizer, docs, **config):
    os.makedirs(tmp_path, exist_ok=True)
    path = write_corpus(tmp_path / "corpus.txt", docs)
    tables = vocab_tables(tokenizer, len(tokenizer))
    cfg = BuildConfig(**{"max_length": 64, "max_predictions": 20, **config})
    folder, built = build(examples_of(path), tokenizer, tables, cfg, str(tmp_path / "cache"))
    meta, shards = open_shards(folder)
    instances = []
    for shard in shards:
        for j, (off, n, a_len, label, doc_a, doc_b) in enumerate(shard["index"].tolist()):
            pos = shard["mlm_pos"][j]
            keep = pos >= 0
            instances.append({"ids": np.asarray(shard["tokens"][off:off + n], dtype=np.int64),
                              "a_len": a_len, "label": label, "doc_a": doc_a, "doc_b": doc_b,
                              "pos": np.asarray(pos[keep]), "inp": np.asarray(shard["mlm_ids"][j][keep])})
    return instances, tables, meta, folder, built


def replacement_shares(ids, positions, inputs, tables):
    mask = same = rand = 0
    for row, pos, inp in zip(ids, positions, inputs):
        orig = row[pos]
        mask += int((inp == tables.mask_id).sum())
        same += int((inp == orig).sum())
        rand += int(((inp != tables.mask_id) & (inp != orig)).sum())
        # a random replacement is never a special token
        assert not tables.special[inp[inp != tables.mask_id]].any()
    total = mask + same + rand
    return mask / total, rand / total, same / total, total


def test_static_masks_choose_15_percent_split_80_10_10(tmp_path, tokenizer):
    instances, tables, meta, _, _ = build_data(tmp_path, tokenizer, documents(300, 1), dupe_factor=5)
    assert meta["instances"] == len(instances) > 1000
    n_cand = [int((~tables.special[x["ids"]]).sum()) for x in instances]
    chosen = [len(x["pos"]) for x in instances]
    # exactly round(15% of the non-special tokens) per sequence, capped at max_predictions
    assert chosen == [min(20, max(1, round(0.15 * n))) for n in n_cand]
    assert abs(sum(chosen) / sum(n_cand) - 0.15) < 0.01       # rounding noise only
    mask, rand, same, total = replacement_shares(
        [x["ids"] for x in instances], [x["pos"] for x in instances], [x["inp"] for x in instances], tables)
    assert total > 10_000
    # binomial sd over >10k draws: 0.004 for 80%, 0.003 for 10%
    assert abs(mask - 0.8) < 0.02 and abs(rand - 0.1) < 0.015 and abs(same - 0.1) < 0.015, (mask, rand, same)


def test_special_tokens_never_chosen(tmp_path, tokenizer):
    instances, tables, _, _, _ = build_data(tmp_path, tokenizer, documents(100, 2))
    for x in instances:
        assert x["ids"][0] == tables.cls_id and x["ids"][-1] == tables.sep_id
        assert x["ids"][x["a_len"] - 1] == tables.sep_id
        assert not tables.special[x["ids"][x["pos"]]].any()
    # and the same rule in a sequence that is mostly special tokens
    rng = np.random.default_rng(0)
    ids = np.array([tables.cls_id, 7, tables.sep_id, 8, tables.sep_id] + [0] * 5)
    for _ in range(200):
        pos, _ = choose_masks(ids, rng, tables)
        assert set(pos.tolist()) <= {1, 3}


def test_nsp_balanced_and_random_b_from_another_document(tmp_path, tokenizer):
    # many one- and two-sentence documents: the hard case for balance
    docs = documents(800, 3, min_sentences=1, max_sentences=4)
    instances, _, _, _, _ = build_data(tmp_path, tokenizer, docs, dupe_factor=3)
    labels = np.array([x["label"] for x in instances])
    assert len(labels) > 2500 and set(labels.tolist()) == {0, 1}
    assert abs(labels.mean() - 0.5) < 0.04        # sd of the share at n > 2500: 0.01
    backend = tokenizer.backend_tokenizer
    streams = [" " + " ".join(str(t) for s in d for t in backend.encode(s, add_special_tokens=False).ids) + " "
               for d in docs]
    for x in instances:
        a, b = x["ids"][1:x["a_len"] - 1], x["ids"][x["a_len"]:-1]
        assert len(a) and len(b)
        if x["label"] == 1:
            assert x["doc_b"] != x["doc_a"]
        else:
            assert x["doc_b"] == x["doc_a"]
        # A comes from its document and B from the document the index names
        assert " " + " ".join(map(str, a)) + " " in streams[x["doc_a"]]
        assert " " + " ".join(map(str, b)) + " " in streams[x["doc_b"]]


def test_short_seq_prob_shortens_that_share_of_instances(tmp_path, tokenizer):
    long_docs = documents(100, 4, min_sentences=30, max_sentences=40)
    full, _, _, _, _ = build_data(tmp_path / "a", tokenizer, long_docs, short_seq_prob=0.0)
    some, _, _, _, _ = build_data(tmp_path / "b", tokenizer, long_docs, short_seq_prob=0.5)
    # with 0: nearly every instance fills the window (only document ends fall short)
    share_short = lambda xs: np.mean([len(x["ids"]) < 50 for x in xs])
    assert share_short(full) < 0.15 and share_short(some) > share_short(full) + 0.2


def whole_words(ids, tokenizer):
    """Words as position sets, from the token strings: a piece and the ``##`` pieces after it."""
    words, special = [], set(tokenizer.all_special_ids)
    for i, (t, tok) in enumerate(zip(ids.tolist(), tokenizer.convert_ids_to_tokens(ids.tolist()))):
        if t in special:
            continue
        if tok.startswith("##") and i and ids[i - 1] not in special and words:
            words[-1].add(i)
        else:
            words.append({i})
    return words


def test_whole_word_masking_never_splits_a_word(tmp_path, tokenizer):
    docs = documents(200, 5, long_words=True)
    assert tokenizer.tokenize(LONG_WORDS[0])[1].startswith("##")   # a multi-piece word
    instances, tables, _, _, _ = build_data(tmp_path / "w", tokenizer, docs, whole_word=True, dupe_factor=2)
    multi_piece_chosen = 0
    for x in instances:
        chosen = set(x["pos"].tolist())
        for word in whole_words(x["ids"], tokenizer):
            assert not chosen & word or word <= chosen, (x["ids"], sorted(chosen), sorted(word))
            multi_piece_chosen += len(word) > 1 and word <= chosen
    assert multi_piece_chosen > 50
    share = sum(len(x["pos"]) for x in instances) / sum(int((~tables.special[x["ids"]]).sum()) for x in instances)
    assert 0.12 < share <= 0.15    # whole words may undershoot the count, never overshoot it
    # without the option, words do get split (so the check above can fail)
    plain, _, _, _, _ = build_data(tmp_path / "p", tokenizer, docs, whole_word=False, dupe_factor=2)
    split = sum(1 for x in plain for w in whole_words(x["ids"], tokenizer)
                if set(x["pos"].tolist()) & w and not w <= set(x["pos"].tolist()))
    assert split > 50


def test_dynamic_masks_per_batch_follow_the_same_rules(tmp_path, tokenizer):
    task = Pretraining(PretrainingOptions(masking="dynamic", cache_dir=str(tmp_path / "cache")))
    path = write_corpus(tmp_path / "c.txt", documents(60, 6))
    task.setup({"train": (exs := examples_of(path))})
    rows = task.encode_all(exs, tokenizer, 64, split="train")
    from taskbert.data.batching import collate

    batch = collate(rows[:32], tokenizer.pad_token_id, task.pad_fields)
    ids, att = batch["input_ids"], batch["attention_mask"]
    torch.manual_seed(0)
    draws = [task._dynamic_masks(ids, att) for _ in range(80)]
    assert not all(np.array_equal(a[0][0], b[0][0]) for a, b in zip(draws, draws[1:]))  # fresh per batch
    lengths = att.sum(1).tolist()
    flat_ids, flat_pos, flat_inp = [], [], []
    for masks in draws:
        for i, (pos, inp) in enumerate(masks):
            row = ids[i].numpy()
            assert (pos < lengths[i]).all() and not task.tables.special[row[pos]].any()   # no padding, no specials
            flat_ids.append(row); flat_pos.append(pos); flat_inp.append(inp)
    n_cand = sum(int((~task.tables.special[ids[i, :n].numpy()]).sum()) for i, n in enumerate(lengths)) * len(draws)
    assert abs(sum(len(p) for p in flat_pos) / n_cand - 0.15) < 0.01
    mask, rand, same, total = replacement_shares(flat_ids, flat_pos, flat_inp, task.tables)
    assert total > 10_000 and abs(mask - 0.8) < 0.02 and abs(rand - 0.1) < 0.015 and abs(same - 0.1) < 0.015


def test_shards_are_written_once_and_reused(tmp_path, tokenizer):
    docs = documents(80, 7)
    first, _, meta, folder, built = build_data(tmp_path, tokenizer, docs, shard_size=25)
    assert built and len(meta["shards"]) == math.ceil(meta["instances"] / 25) > 2
    for name in meta["shards"]:
        assert isinstance(np.load(os.path.join(folder, name, "tokens.npy"), mmap_mode="r"), np.memmap)
    again, _, _, folder2, built2 = build_data(tmp_path, tokenizer, docs, shard_size=25)
    assert folder2 == folder and not built2
    assert all(np.array_equal(a["ids"], b["ids"]) and np.array_equal(a["pos"], b["pos"]) for a, b in zip(first, again))
    # another seed or another text gives another key
    _, _, _, folder3, built3 = build_data(tmp_path, tokenizer, docs, shard_size=25, seed=7)
    assert built3 and folder3 != folder
    _, _, _, folder4, built4 = build_data(tmp_path, tokenizer, documents(80, 8), shard_size=25)
    assert built4 and folder4 not in (folder, folder3)
    assert not [f for f in os.listdir(tmp_path / "cache") if f.startswith(".")]   # no temp folders left


def test_rows_are_light_views_into_the_memmap(tmp_path, tokenizer):
    task = Pretraining(PretrainingOptions(cache_dir=str(tmp_path / "cache"), shard_size=30, nsp=False))
    path = write_corpus(tmp_path / "c.txt", documents(50, 9))
    exs = examples_of(path)
    task.setup({"train": exs})
    rows = task.encode_all(exs, tokenizer, 32, split="train")
    assert all(len(r["input_ids"]) <= 32 for r in rows)
    for r in rows:   # views into the memory-mapped shard, not copies
        tokens = task._stores[r["store"]]["tokens"]
        assert isinstance(tokens, np.memmap) and np.shares_memory(r["input_ids"], tokens)
    assert {r["nsp_label"] for r in rows} == {-1} and {r["a_len"] == len(r["input_ids"]) for r in rows} == {True}
    assert len({r["store"] for r in rows}) > 1   # several shards
    assert all("text" not in ex for ex in exs)   # examples hold byte ranges, not text


def test_nsp_needs_two_documents(tmp_path):
    from taskbert import DataError

    task = Pretraining(PretrainingOptions())
    path = write_corpus(tmp_path / "one.txt", documents(1, 1))
    with pytest.raises(DataError, match="data.train: next-sentence prediction needs at least 2 documents"):
        task.setup({"train": examples_of(path)})
    Pretraining(PretrainingOptions(nsp=False)).setup({"train": examples_of(path)})


def test_unlimited_encoding_and_truncation_for_debug_data(tmp_path, tokenizer):
    task = Pretraining(PretrainingOptions(cache_dir=str(tmp_path / "cache")))
    docs = documents(5, 10)
    docs[0].append(" ".join(["cat"] * 70) + ".")     # one sentence longer than a 64-token window
    exs = examples_of(write_corpus(tmp_path / "c.txt", docs))
    rows = task.encode_all(exs, tokenizer, 1_000_000)
    backend = tokenizer.backend_tokenizer
    assert [r["input_ids"] for r in rows] == [
        [t for s in d for t in backend.encode(s, add_special_tokens=False).ids] for d in docs]
    assert task.truncation(exs, tokenizer, 64) == {"sentences": (1, sum(len(d) for d in docs))}
    assert not os.path.exists(tmp_path / "cache")    # nothing cached for that
