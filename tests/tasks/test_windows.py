"""Long inputs in windows (sentence_classification, sentence_pair): the window geometry worked
by hand, the pooling against the plain per-document computation, and the batching that keeps
a document's windows together."""

import math
import random

import pytest
import torch

from taskbert.data.batching import eval_batches, pack, train_batches, units
from taskbert.errors import SpecError
from taskbert.testing import TINY_WORDS, make_tokenizer
from taskbert.train.distributed import World
from taskbert.train.steps import plan_steps
from taskbert_plugins.classification import ClassificationOptions, SentenceClassification
from taskbert_plugins.classification import windows as win
from taskbert_plugins.pairs.task import PairOptions, SentencePair


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer(TINY_WORDS)


def words(n):
    """``n`` distinct one-token words of the tiny vocabulary, cycling."""
    return " ".join(TINY_WORDS[i % len(TINY_WORDS)] for i in range(n))


# --------------------------------------------------------------- geometry
def test_window_arithmetic_by_hand():
    # budget 6, overlap 2: the step is 4, windows start at 0, 4, 8, 12, 16, 20 for 23 tokens
    assert win.window_count(23, 6, 2) == 6
    assert win.window_count(6, 6, 2) == 1 and win.window_count(7, 6, 2) == 2 and win.window_count(1, 6, 2) == 1
    assert win.kept_windows(5, 8) == [0, 1, 2, 3, 4]
    assert win.kept_windows(10, 4) == [0, 3, 6, 9]          # round(k * 9 / 3)
    assert win.kept_windows(10, 1) == [0]
    assert win.kept_windows(10, 2) == [0, 9]
    # windows 0 and 5 of 23 tokens: [0, 6) and [20, 23): 9 tokens; 0..5 all: every token
    assert win.tokens_read(23, 6, 2, [0, 5]) == 9
    assert win.tokens_read(23, 6, 2, range(6)) == 23
    assert win.tokens_read(23, 6, 2, [0, 1]) == 10          # [0, 6) and [4, 10) share 2


def test_windows_cover_every_token_with_the_stated_overlap(tokenizer):
    task = SentenceClassification(ClassificationOptions(long_inputs="windows", window_overlap=2, max_windows=99))
    text = words(23)
    full = tokenizer(text, add_special_tokens=False)["input_ids"]
    rows = task.encode_all([{"text": text, "label": None}], tokenizer, max_length=8)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    pieces = [r["input_ids"][1:-1] for r in rows]
    assert all(r["input_ids"][0] == cls and r["input_ids"][-1] == sep and r["example_index"] == 0 for r in rows)
    assert [len(p) for p in pieces] == [6, 6, 6, 6, 6, 3]
    for k, piece in enumerate(pieces):                      # window k is tokens [4k, 4k + 6)
        assert piece == full[4 * k:4 * k + 6]
    for a, b in zip(pieces, pieces[1:-1]):                  # neighbours share exactly 2 tokens
        assert a[-2:] == b[:2]


def test_max_windows_keeps_the_first_and_last_spread_evenly(tokenizer):
    task = SentenceClassification(ClassificationOptions(long_inputs="windows", window_overlap=0, max_windows=3))
    text = words(60)                                        # budget 6, no overlap: 10 windows
    full = tokenizer(text, add_special_tokens=False)["input_ids"]
    rows = task.encode_all([{"text": text, "label": None}, {"text": words(3), "label": None}], tokenizer, 8)
    first = [r["input_ids"][1:-1] for r in rows if r["example_index"] == 0]
    assert first == [full[0:6], full[24:30], full[54:60]]   # windows 0, round(4.5) = 4, 9
    assert [r["example_index"] for r in rows] == [0, 0, 0, 1]
    cuts = task.truncation([{"text": text, "label": None}], tokenizer, 8)
    assert cuts == {"tokens left out by max_windows": (42, 60),
                    "tokens cut by max_length with long_inputs: truncate": (54, 60)}


def test_overlap_too_large_is_one_line(tokenizer):
    task = SentenceClassification(ClassificationOptions(long_inputs="windows", window_overlap=6))
    with pytest.raises(SpecError, match=r"task_options.window_overlap: 6 must be smaller than the 6 text tokens"):
        task.check_encoding(tokenizer, 8, None)


def test_truncate_stays_one_row_per_text(tokenizer):
    task = SentenceClassification(ClassificationOptions())
    rows = task.encode_all([{"text": words(50), "label": None}], tokenizer, 8)
    assert len(rows) == 1 and len(rows[0]["input_ids"]) == 8 and not task.whole_examples


def test_pairs_window_the_longer_text_and_repeat_the_shorter(tokenizer):
    task = SentencePair(PairOptions(long_inputs="windows", window_overlap=1, max_windows=99))
    short, long = words(2), " ".join(reversed(words(20).split()))
    rows = task.encode_all([{"text_a": short, "text_b": long, "label": None},
                            {"text_a": long, "text_b": short, "label": None}], tokenizer, max_length=12)
    short_ids = tokenizer(short, add_special_tokens=False)["input_ids"]
    long_ids = tokenizer(long, add_special_tokens=False)["input_ids"]
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    # 12 - 3 specials - 2 short = 7 long tokens a window, step 6: windows at 0, 6, 12, 18 of 20
    for index, short_first in ((0, True), (1, False)):
        mine = [r for r in rows if r["example_index"] == index]
        assert len(mine) == 4
        for k, r in enumerate(mine):
            piece = long_ids[6 * k:6 * k + 7]
            a, b = (short_ids, piece) if short_first else (piece, short_ids)
            assert r["input_ids"] == [cls, *a, sep, *b, sep]
            assert r["token_type_ids"] == [0] * (len(a) + 2) + [1] * (len(b) + 1)


def test_pairs_cut_a_long_shorter_text_to_half_a_window(tokenizer):
    task = SentencePair(PairOptions(long_inputs="windows", window_overlap=0))
    a, b = words(9), words(30)
    rows = task.encode_all([{"text_a": a, "text_b": b, "label": None}], tokenizer, max_length=13)
    cap = (13 - 3) // 2                                      # 5 tokens of the shorter text
    a_ids = tokenizer(a, add_special_tokens=False)["input_ids"]
    for r in rows:
        assert r["input_ids"][1:1 + cap] == a_ids[:cap] and r["input_ids"][1 + cap] == tokenizer.sep_token_id


# ---------------------------------------------------------------- pooling
def _documents(index):
    return {d: [i for i, x in enumerate(index) if x == d] for d in dict.fromkeys(index)}


@pytest.mark.parametrize("mode", ["mean", "max"])
def test_pool_logits_matches_the_per_document_computation(mode):
    torch.manual_seed(0)
    index = torch.tensor([4, 4, 7, 2, 2, 2, 7])
    logits = torch.randn(7, 3)
    pooled = win.pool_logits(logits, win.same_document({"example_index": index}), mode)
    for rows in _documents(index.tolist()).values():
        part = logits[rows]
        want = part.mean(0) if mode == "mean" else part.max(0).values
        for r in rows:
            assert torch.allclose(pooled[r], want, atol=1e-6)


def test_window_attention_is_a_softmax_per_document():
    torch.manual_seed(1)
    index = torch.tensor([0, 0, 0, 5, 5, 9])
    vectors = torch.randn(6, 4)
    attention = win.WindowAttention(4)
    same = win.same_document({"example_index": index})
    # zero-initialised: the plain mean of each document's vectors
    assert torch.allclose(attention(vectors, same), win.pool_logits(vectors, same, "mean"), atol=1e-6)
    torch.nn.init.normal_(attention.score.weight)
    attention.requires_grad_(False)
    out = attention(vectors, same)
    for rows in _documents(index.tolist()).values():
        scores = torch.tensor([float(vectors[r] @ attention.score.weight[0] + attention.score.bias[0]) for r in rows])
        weights = torch.softmax(scores, 0)
        want = sum(w * vectors[r] for w, r in zip(weights, rows))
        for r in rows:
            assert torch.allclose(out[r], want, atol=1e-5)


def test_document_loss_is_a_mean_over_documents():
    torch.manual_seed(2)
    index = torch.tensor([0, 0, 0, 1, 2, 2])
    label = torch.tensor([1, 1, 1, 0, -100, -100])   # document 2 is unlabelled
    logits = win.pool_logits(torch.randn(6, 2), win.same_document({"example_index": index}), "mean")
    loss = win.document_loss(logits, {"label": label}, win.same_document({"example_index": index}))
    ce = torch.nn.functional.cross_entropy
    want = (ce(logits[0:1], label[0:1]) + ce(logits[3:4], label[3:4])) / 2
    assert torch.allclose(loss, want, atol=1e-6)
    score = torch.tensor([0.5, 0.5, 2.0, 2.0])
    reg = win.document_loss(torch.tensor([[1.0], [1.0], [3.0], [3.0]]), {"label": score},
                            win.same_document({"example_index": torch.tensor([0, 0, 1, 1])}), regression=True)
    assert math.isclose(float(reg), (0.25 + 1.0) / 2, rel_tol=1e-6)


# --------------------------------------------------------------- batching
def _old_train_batches(lengths, batch_size, seed, epoch, chunk_batches=50):
    """The batching before groups existed, kept here as the reference."""
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch_size * chunk_batches
    batches = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start:start + chunk], key=lambda i: lengths[i])
        batches.extend(part[i:i + batch_size] for i in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


def test_rows_without_groups_batch_as_before():
    rng = random.Random(0)
    lengths = [rng.randint(3, 60) for _ in range(1234)]
    for epoch in range(3):
        assert train_batches(lengths, 16, 7, epoch) == _old_train_batches(lengths, 16, 7, epoch)
    old_eval = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    assert eval_batches(lengths, 32) == [old_eval[i:i + 32] for i in range(0, len(lengths), 32)]


def test_grouped_batches_hold_whole_documents_and_at_most_batch_size_rows():
    rng = random.Random(1)
    groups, lengths = [], []
    for doc in range(300):
        n = rng.choice([1, 1, 1, 2, 3, 5, 12])               # 12 > batch_size: a batch alone
        groups += [doc] * n
        lengths += [32] * (n - 1) + [rng.randint(4, 32)]
    for batches in (train_batches(lengths, 8, 3, 0, groups=groups), eval_batches(lengths, 8, groups)):
        assert sorted(i for b in batches for i in b) == list(range(len(groups)))
        for b in batches:
            docs = {groups[i] for i in b}
            assert all(groups.count(d) == sum(groups[i] == d for i in b) for d in docs)   # whole
            assert len(b) <= 8 or len(docs) == 1
    assert train_batches(lengths, 8, 3, 1, groups=groups) == train_batches(lengths, 8, 3, 1, groups=groups)
    assert pack([[0], [1, 2], [3, 4, 5], [6]], 3) == [[0, 1, 2], [3, 4, 5], [6]]


def test_plan_counts_each_epochs_batches():
    class T:
        epochs, max_steps, grad_accum, warmup = 2.5, None, 2, 0.1
    counts = {0: 10, 1: 9, 2: 11}
    fewest, total, warmup = plan_steps(T, counts.__getitem__)
    assert (fewest, total, warmup) == (9, 5 + 4 + math.ceil(0.5 * 5), 1)
    T.epochs = 3                                                   # equal counts: epochs * steps
    assert plan_steps(T, lambda e: 10)[1] == 15
    T.max_steps = 7          # max_steps: every epoch the run starts counts, not only the first
    counts = {0: 6, 1: 1, 2: 6, 3: 6}
    seen = []
    fewest, total, _ = plan_steps(T, lambda e: seen.append(e) or counts[e])
    assert (fewest, total, seen) == (1, 7, [0, 1, 2])         # 3 + 1 + 3 steps reach 7


def test_a_rank_gets_whole_documents():
    groups = [0, 0, 1, 2, 2, 2, 3]
    ids = [0, 1, 2, 3, 4, 5, 6]
    assert units(ids, groups) == [[0, 1], [2], [3, 4, 5], [6]]
    assert World(rank=0, world=2).shard(ids, groups) == [0, 1, 3, 4, 5]
    assert World(rank=1, world=2).shard(ids, groups) == [2, 6]
    assert World(rank=1, world=2).shard(ids) == [1, 3, 5]
