"""token_classification pieces, checked against values worked out by hand: readers,
word windows, subword alignment, pooling, tag schemes and scores."""

import random

import pytest
import torch

from taskbert import DataError, SpecError
from taskbert.testing import make_tokenizer
from taskbert_plugins.conll import read_conll, read_wordtag
from taskbert_plugins.tagging.entities import entity_scores, entity_spans, invalid_transitions
from taskbert_plugins.tagging import TaggingOptions, TokenClassification
from taskbert_plugins.tagging.windows import word_windows


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


# --------------------------------------------------------------------------- readers
def test_conll_sentences_docstart_and_columns(tmp_path):
    path = write(tmp_path / "a.txt", "-DOCSTART- -X- O O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n\n"
                                     "Peter NNP B-NP B-PER\n-DOCSTART- -X- O O\nBlackburn NNP B-NP B-LOC\n")
    records = list(read_conll(path, {}))
    assert records == [(3, {"tokens": ["EU", "rejects"], "tags": ["B-ORG", "O"]}),
                       (7, {"tokens": ["Peter"], "tags": ["B-PER"]}),
                       (9, {"tokens": ["Blackburn"], "tags": ["B-LOC"]})]
    pos = list(read_conll(path, {"token_column": 0, "label_column": 1}))
    assert pos[0] == (3, {"tokens": ["EU", "rejects"], "tags": ["NNP", "VBZ"]})


def test_conll_wrong_column_count_names_file_and_line(tmp_path):
    path = write(tmp_path / "b.txt", "a\tO\nb\tB-x\n\nc\tO\tEXTRA\n")
    with pytest.raises(DataError, match=r"b\.txt:4: 3 columns, expected 2 \(as on line 1\)"):
        list(read_conll(path, {"separator": "\t"}))
    with pytest.raises(DataError, match=r"b\.txt:1: data.reader_options.label_column 5 is out of range"):
        list(read_conll(path, {"label_column": 5}))
    with pytest.raises(DataError, match="unknown option 'label_col'"):
        list(read_conll(path, {"label_col": 1}))


def test_conll_tab_separator_keeps_spaces_and_one_column_is_words_only(tmp_path):
    path = write(tmp_path / "c.txt", "New York\tB-loc\nis\tO\n")
    assert list(read_conll(path, {"separator": "\t"})) == [(1, {"tokens": ["New York", "is"], "tags": ["B-loc", "O"]})]
    words = write(tmp_path / "d.txt", "alice\nwent\n\nbob\n")
    assert list(read_conll(words, {})) == [(1, {"tokens": ["alice", "went"]}), (4, {"tokens": ["bob"]})]


def test_wordtag_tag_after_last_slash_and_errors(tmp_path):
    path = write(tmp_path / "w.txt", "The/DT 1/2/CD rise/NN ./.\n\nIt/PRP 's/VBZ\n")
    assert list(read_wordtag(path, {})) == [
        (1, {"tokens": ["The", "1/2", "rise", "."], "tags": ["DT", "CD", "NN", "."]}),
        (3, {"tokens": ["It", "'s"], "tags": ["PRP", "VBZ"]})]
    bad = write(tmp_path / "bad.txt", "The/DT cat/NN\nA dog/NN\n")
    with pytest.raises(DataError, match=r"bad\.txt:2: token 1 'A' is not word/TAG"):
        list(read_wordtag(bad, {}))


# --------------------------------------------------------------------------- windows
def test_windows_hand_worked():
    # ten one-subtoken words, 4 per window, 2 shared: starts at 0, 2, 4, 6. Word 2 has
    # (left 2, right 1) in the first window and (0, 3) in the second: min 1 > 0, first wins.
    wins = word_windows([1] * 10, budget=4, overlap=2)
    assert [(w.start, w.end, w.owned) for w in wins] == [
        (0, 4, (0, 1, 2)), (2, 6, (3, 4)), (4, 8, (5, 6)), (6, 10, (7, 8, 9))]
    # uneven words [2,1,3,1,1,2], 5 per window, 2 shared -> [0,2) [1,4) [3,6); word 1 has
    # min context 0 in both windows, left + right 2 in the first and 4 in the second
    wins = word_windows([2, 1, 3, 1, 1, 2], budget=5, overlap=2)
    assert [(w.start, w.end, w.owned) for w in wins] == [(0, 2, (0,)), (1, 4, (1, 2, 3)), (3, 6, (4, 5))]
    assert [(w.start, w.end, w.owned) for w in word_windows([3, 2], 10, 4)] == [(0, 2, (0, 1))]
    assert word_windows([], 10, 4) == []
    # a word longer than a window gets a window of its own
    assert [(w.start, w.end) for w in word_windows([2, 9, 2], 5, 2)] == [(0, 1), (1, 2), (2, 3)]
    with pytest.raises(ValueError, match="overlap"):
        word_windows([1, 1], 4, 4)


def test_windows_cover_every_word_once_with_most_context():
    rng = random.Random(0)
    for _ in range(300):
        lengths = [rng.choice([0, 1, 1, 1, 2, 3, 7]) for _ in range(rng.randint(1, 60))]
        budget = rng.randint(1, 16)
        overlap = rng.randint(0, budget - 1)
        wins = word_windows(lengths, budget, overlap)
        owned = sorted(w for win in wins for w in win.owned)
        assert owned == list(range(len(lengths)))
        size = [min(n, budget) for n in lengths]
        for a, b in zip(wins, wins[1:]):
            assert a.start < b.start and a.end < b.end
            assert sum(size[b.start:a.end]) <= overlap
        for win in wins:
            assert sum(size[win.start:win.end]) <= budget or win.end - win.start == 1

            def ctx(v, i):
                return min(sum(size[v.start:i]), sum(size[i + 1:v.end]))
            for i in win.owned:
                assert all(ctx(win, i) >= ctx(v, i) for v in wins if v.start <= i < v.end)


# ------------------------------------------------------------------------- alignment
@pytest.fixture(scope="module")
def tokenizer():
    # vocabulary: whole words alice, went, xy; single characters and ## continuations
    return make_tokenizer(["alice", "went", "xy", "z", "u", "s", ".", "!"])


def tagger(tags, **options):
    task = TokenClassification(TaggingOptions(**options))
    task.setup({"train": [{"tokens": ["w"] * len(tags), "tags": tags, "where": "t:1"}]})
    return task


WORDS = ["alice", "xyz", "\u200b", "went", "U.S.", "!"]
TAGS = ["B-per", "O", "O", "O", "B-loc", "O"]


def test_alignment_first_subtoken_and_zero_token_word(tokenizer, capsys):
    task = tagger(TAGS)
    ids = {t: i for i, t in enumerate(task.labels)}  # B-loc 0, B-per 1, O 2
    rows = task.encode_all([{"tokens": WORDS, "tags": TAGS, "where": "f:1"}], tokenizer, 32)
    assert len(rows) == 1
    row = rows[0]
    # [CLS] alice | xy ##z | [UNK] (the zero-width space) | went | u . s . | ! [SEP]
    assert tokenizer.convert_ids_to_tokens(row["input_ids"]) == [
        "[CLS]", "alice", "xy", "##z", "[UNK]", "went", "u", ".", "s", ".", "!", "[SEP]"]
    n = -100
    assert row["labels"] == [n, ids["B-per"], ids["O"], n, ids["O"], ids["O"], ids["B-loc"], n, n, n, ids["O"], n]
    assert row["word_slot"] == [-1, 0, 1, 1, 2, 3, 4, 4, 4, 4, 5, -1]
    assert row["first_positions"] == [1, 2, 4, 5, 6, 10]
    assert row["no_tokens"] == [2]
    assert "1 words give no subword tokens" in capsys.readouterr().err


def test_alignment_all_subtokens(tokenizer):
    task = tagger(TAGS, subword_labels="all")
    o, loc = task.labels.index("O"), task.labels.index("B-loc")
    row = task.encode_all([{"tokens": WORDS, "tags": TAGS, "where": "f:1"}], tokenizer, 32)[0]
    assert row["labels"][2:4] == [o, o] and row["labels"][6:10] == [loc] * 4


def test_long_sentence_windows_label_each_word_once(tokenizer):
    words = ["alice", "went", "xyz"] * 7     # 28 subtokens, 8 per window
    tags = ["B-per", "O", "O"] * 7
    task = tagger(tags, window_overlap=3)
    rows = task.encode_all([{"tokens": words, "tags": tags, "where": "f:1"}], tokenizer, 10)
    assert len(rows) > 3 and all(len(r["input_ids"]) <= 10 for r in rows)
    owned = sorted(w for r in rows for w in r["owned_words"])
    assert owned == list(range(len(words)))
    assert sum(lab != -100 for r in rows for lab in r["labels"]) == len(words)
    with pytest.raises(SpecError, match="window_overlap: 8 must be smaller than the 8 subtokens"):
        tagger(tags, window_overlap=8).encode_all([{"tokens": words, "tags": tags, "where": "f:1"}],
                                                  tokenizer, 10)


def fake_batch(task, logits, rows):
    from taskbert.data.batching import collate

    return {"logits": torch.tensor(logits)}, collate(rows, 0, task.pad_fields)


# word 0 = tokens 1..3 with logits (a, b): (2, 0) (0, 1) (0, 1.5)
#   first (2, 0) -> a;  mean (0.67, 0.83) -> b;  max (2, 1.5) -> a
# word 1 = tokens 4..5: (1, 0) (-3, 3)
#   first (1, 0) -> a;  mean (-1, 1.5) -> b;    max (1, 3) -> b
@pytest.mark.parametrize("pooling,expected", [("first", ["a", "a"]), ("mean", ["b", "b"]), ("max", ["a", "b"])])
def test_word_pooling_by_hand(pooling, expected):
    task = tagger(["a", "b"], scheme="none", word_pooling=pooling)
    row = {"input_ids": [1] * 7, "labels": [-100] * 7, "word_slot": [-1, 0, 0, 0, 1, 1, -1],
           "owned_words": [0, 1], "first_positions": [1, 4], "no_tokens": [], "example_index": 0}
    logits = [[[0, 0], [2, 0], [0, 1], [0, 1.5], [1, 0], [-3, 3], [0, 0]]]
    out, batch = fake_batch(task, logits, [row])
    got = task.collect(out, batch)[0]
    assert [w for w, _, _ in got] == [0, 1]
    assert [task.labels[t] for _, t, _ in got] == expected


# --------------------------------------------------------------------- tag schemes
def test_invalid_transitions_by_scheme():
    assert [i for i, _ in invalid_transitions(["O", "I-per", "I-per", "B-loc", "I-org"], "IOB2")] == [1, 4]
    assert invalid_transitions(["B-per", "I-per", "O"], "IOB2") == []
    assert [i for i, _ in invalid_transitions(["I-per", "B-per", "O", "B-loc"], "IOB1")] == [3]
    assert [i for i, _ in invalid_transitions(["B-per", "O", "S-loc", "I-loc", "E-loc", "B-x"], "IOBES")] == [1, 3, 5]
    assert invalid_transitions(["B-per", "E-per", "S-loc", "O"], "IOBES") == []


def test_spans_and_scores_by_hand():
    assert entity_spans(["B-per", "I-per", "O", "I-loc", "B-loc"], "IOB2") == [("per", 0, 2), ("loc", 4, 5)]
    assert entity_spans(["I-per", "I-per", "B-per", "O", "I-loc"], "IOB1") == [("per", 0, 2), ("per", 2, 3), ("loc", 4, 5)]
    assert entity_spans(["S-per", "B-loc", "E-loc"], "IOBES") == [("per", 0, 1), ("loc", 1, 3)]
    gold = [["B-per", "I-per", "O", "B-loc"]]
    pred = [["B-per", "I-per", "O", "I-loc"]]
    strict = entity_scores(gold, pred, "IOB2")   # I-loc after O is no entity in strict IOB2
    assert (strict["precision"], strict["recall"]) == (1.0, 0.5)
    assert strict["f1"] == pytest.approx(2 / 3)
    assert strict["by_type"]["loc"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert entity_scores(gold, pred, "IOB1")["f1"] == 1.0   # conlleval: I- opens an entity


def test_setup_errors_name_the_line():
    task = TokenClassification(TaggingOptions())
    train = [{"tokens": ["The", "dog"], "tags": ["DT", "NN"], "where": "wsj.txt:3"}]
    with pytest.raises(DataError, match=r"wsj.txt:3: word 1 'The': tag 'DT' is not a IOB2 tag.*scheme"):
        task.setup({"train": train})
    TokenClassification(TaggingOptions(scheme="none")).setup({"train": train})
    dev = [{"tokens": ["a"], "tags": ["B-new"], "where": "dev.txt:7"}]
    ner = [{"tokens": ["a", "b"], "tags": ["B-per", "O"], "where": "train.txt:1"}]
    with pytest.raises(DataError, match=r"dev.txt:7: word 1 'a': tag 'B-new' is not in the training data"):
        TokenClassification(TaggingOptions()).setup({"train": ner, "validation": dev})
    TokenClassification(TaggingOptions(unseen_labels="ignore")).setup({"train": ner, "validation": dev})


def test_example_errors():
    task = TokenClassification(TaggingOptions())
    with pytest.raises(DataError, match=r"x:2: 2 words but 1 tags"):
        task.example_from_record({"tokens": ["a", "b"], "tags": ["O"]}, "x:2")
    with pytest.raises(DataError, match=r"x:3: missing field 'tokens'; record has: text"):
        task.example_from_record({"text": "a b"}, "x:3")
    assert task.example_from_record({"tokens": ["a"]}, "x:4", labelled=False)["tags"] is None


def test_record_from_text_keeps_offsets():
    task = TokenClassification(TaggingOptions(text_tokenizer="punctuation"))
    rec = task.record_from_text("Hi, Zoë  in Paris!")
    ex = task.example_from_record(rec, "in:1", labelled=False)
    assert ex["tokens"] == ["Hi", ",", "Zoë", "in", "Paris", "!"]
    assert [ex["text"][a:b] for a, b in ex["offsets"]] == ex["tokens"]
    assert TokenClassification(TaggingOptions()).record_from_text("Hi, Zoë")["tokens"] == ["Hi,", "Zoë"]


def test_decode_spans_with_character_offsets():
    task = tagger(["B-per", "I-per", "O", "B-loc"])
    ids = {t: i for i, t in enumerate(task.labels)}
    ex = task.example_from_record(task.record_from_text("Ada  Lovelace visited  Paris"), "in:1", labelled=False)
    rows = [{"example_index": 0, "no_tokens": []}]
    results = [[(0, ids["B-per"], 0.9), (1, ids["I-per"], 0.8), (2, ids["O"], 0.7), (3, ids["B-loc"], 0.6)]]
    (pred,) = task.decode(results, rows, [ex])
    assert pred["tags"] == ["B-per", "I-per", "O", "B-loc"]
    assert pred["entities"] == [
        {"type": "per", "start": 0, "end": 13, "text": "Ada  Lovelace", "words": [0, 2]},
        {"type": "loc", "start": 23, "end": 28, "text": "Paris", "words": [3, 4]}]
    # without the raw line, offsets refer to the words joined by single spaces
    plain = {"tokens": ["Ada", "Lovelace", "visited", "Paris"], "tags": None, "where": "f:1"}
    (pred,) = task.decode(results, rows, [plain])
    assert pred["text"] == "Ada Lovelace visited Paris" and pred["entities"][1]["start"] == 21


def test_truncation_counts_only_words_longer_than_a_window(tokenizer):
    task = tagger(["O", "B-x"])
    examples = [{"tokens": ["alice", "xyzxyzxyz", "went"], "tags": None, "where": "f:1"}]
    # xyzxyzxyz = xy ##z ##x ##y ##z ##x ##y ##z = 8 subtokens; a max_length of 8 holds 6
    assert task.truncation(examples, tokenizer, 8) == {"words": (1, 3)}
    assert task.truncation(examples, tokenizer, 10) == {"words": (0, 3)}


def test_entity_scores_without_gold_entities_are_zero_and_quiet(recwarn):
    """No gold entity survives strict scoring: zeros, and no numpy warning on stderr."""
    from taskbert_plugins.tagging.entities import entity_scores

    scores = entity_scores([["O", "O"]], [["B-per", "O"]], "IOBES")
    assert scores == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "by_type": {}}
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
