"""Windows over long passages and span decoding, on hand-set logits and a tiny tokenizer."""

import pytest

from taskbert import SpecError
from taskbert.testing import make_tokenizer
from taskbert_plugins.qa import ExtractiveQA, QAOptions
from taskbert_plugins.qa.decode import (answer_token_span, decode_answer, encode_windows,
                                        window_candidates)

# passage "aa bb cc dd ee ff": words at characters (0,2) (3,5) (6,8) (9,11) (12,14) (15,17)
CONTEXT = "aa bb cc dd ee ff"
OFFSETS = [(0, 2), (3, 5), (6, 8), (9, 11), (12, 14), (15, 17)]
# two windows of [CLS] q q [SEP] p p p p [SEP] (passage from position 3), overlapping by 2
W1 = (3, OFFSETS[0:4])   # aa bb cc dd
W2 = (3, OFFSETS[2:6])   # cc dd ee ff


def logits(values):
    """9 positions; unset ones are -5 (question tokens and [SEP] included)."""
    out = [-5.0] * 9
    for pos, v in values.items():
        out[pos] = float(v)
    return out


def window(start, end, spec):
    return (logits(start), logits(end), *spec)


def test_best_span_in_second_window_maps_to_characters():
    windows = [window({0: 1, 4: 2}, {0: 1, 5: 2}, W1),      # 'bb cc' scores 4
               window({0: 0, 5: 5}, {0: 0, 6: 4}, W2)]      # 'ee ff' scores 9
    answer = decode_answer(CONTEXT, windows)
    assert answer["text"] == "ee ff" and (answer["start"], answer["end"]) == (12, 17)
    assert answer["score"] == 9.0
    assert CONTEXT[answer["start"]:answer["end"]] == answer["text"]


def test_start_after_end_and_too_long_spans_are_skipped():
    # the highest start (dd) comes after the highest end (aa): that pair is not a span
    start, end = {6: 10, 4: 2}, {3: 10, 5: 2, 6: -1}
    answer = decode_answer(CONTEXT, [window(start, end, W1)])
    assert answer["text"] == "dd"   # dd..dd 10 - 1 = 9 beats aa..aa -5 + 10 and bb..cc 2 + 2
    # 'aa .. dd' is the best pair but 4 tokens long; with at most 2 tokens 'cc dd' wins
    start, end = {3: 9, 5: 2}, {6: 9}
    assert decode_answer(CONTEXT, [window(start, end, W1)])["text"] == "aa bb cc dd"
    assert decode_answer(CONTEXT, [window(start, end, W1)], max_answer_tokens=2)["text"] == "cc dd"


def test_logits_outside_the_passage_are_ignored():
    start, end = {1: 100, 2: 100, 7: 100, 4: 1}, {1: 100, 8: 100, 4: 1}
    assert decode_answer(CONTEXT, [window(start, end, W1)])["text"] == "bb"


def test_overlapping_windows_count_a_span_once_with_its_best_score():
    windows = [window({5: 1}, {6: 2}, W1),          # 'cc dd' in window 1: 3
               window({3: 3}, {4: 2}, W2)]          # the same 'cc dd' in window 2: 5
    candidates = window_candidates(*windows[1][:2], *W2, n_best=20, max_answer_tokens=30)
    assert (5.0, 6, 11) in candidates
    answer = decode_answer(CONTEXT, windows, n_best=1)
    assert answer["text"] == "cc dd" and answer["score"] == 5.0
    assert answer["probability"] == 1.0   # the only candidate left after merging (n_best=1)


def test_null_answer_threshold():
    windows = [window({0: 6, 4: 2}, {0: 6, 4: 2}, W1),   # null 12, 'bb' 4
               window({0: 4, 5: 3}, {0: 4, 5: 3}, W2)]   # null 8, 'ee' 6
    # null score is the lowest over windows (8); best span 6; 8 - 6 = 2
    answer = decode_answer(CONTEXT, windows, allow_no_answer=True)
    assert answer == {"text": "", "start": None, "end": None, "score": 8.0,
                      "probability": answer["probability"]}
    assert 0 < answer["probability"] < 1
    assert decode_answer(CONTEXT, windows, allow_no_answer=True, null_score_threshold=1.9)["text"] == ""
    assert decode_answer(CONTEXT, windows, allow_no_answer=True, null_score_threshold=2.1)["text"] == "ee"
    assert decode_answer(CONTEXT, windows, allow_no_answer=False)["text"] == "ee"


def test_answer_token_span():
    offsets = OFFSETS[2:6]   # cc dd ee ff from position 3
    assert answer_token_span(offsets, 3, 9, 14) == (4, 5)      # 'dd ee'
    assert answer_token_span(offsets, 3, 10, 11) == (4, 4)     # inside 'dd'
    assert answer_token_span(offsets, 3, 3, 8) == (0, 0)       # starts before the window
    assert answer_token_span(offsets, 3, 15, 18) == (0, 0)     # ends after it
    assert answer_token_span([], 3, 0, 2) == (0, 0)


WORDS = "aa bb cc dd ee ff gg hh ii jj kk what is the answer".split()


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer(WORDS)


def qa_example(question, context, text=None, start=None):
    task = ExtractiveQA(QAOptions())
    answers = {"text": [text] if text else [], "answer_start": [start] if text else []}
    return task.example_from_record({"question": question, "context": context, "answers": answers}, "t:1")


def test_windows_overlap_by_the_given_tokens_and_cover_the_passage(tokenizer):
    words = (WORDS[:11] * 3)[:30]
    context = " ".join(words)
    ex = qa_example("what is the answer", context)
    rows = encode_windows([ex], tokenizer, max_length=20, overlap=3, max_question_tokens=4)
    # 20 - 4 question tokens - 3 special tokens = 13 passage tokens, step 13 - 3 = 10
    assert [len(r["offsets"]) for r in rows] == [13, 13, 10]
    for a, b in zip(rows, rows[1:]):
        assert a["offsets"][-3:] == b["offsets"][:3]
    seen = sorted({o for r in rows for o in r["offsets"]})
    assert [context[s:e] for s, e in seen] == words
    for r in rows:
        assert r["passage_start"] == 6 and r["token_type_ids"][6] == 1
        assert sum(r["passage_mask"]) == len(r["offsets"]) and r["passage_mask"][6] == 1
        assert (r["start_position"], r["end_position"]) == (0, 0)   # unanswerable


def test_answer_labelled_only_in_windows_that_hold_it(tokenizer):
    words = (WORDS[:11] * 3)[:30]
    context = " ".join(words)
    start = len(" ".join(words[:24])) + 1            # words 24-25: only window 3 (words 20-29)
    text = " ".join(words[24:26])
    ex = qa_example("what is the answer", context, text, start)
    rows = encode_windows([ex], tokenizer, max_length=20, overlap=3, max_question_tokens=4)
    labelled = [r for r in rows if r["start_position"]]
    assert rows[0]["start_position"] == 0 and len(labelled) == 1 and labelled[0] is rows[2]
    r = rows[2]
    ids = r["input_ids"][r["start_position"]:r["end_position"] + 1]
    assert tokenizer.decode(ids) == text
    s = r["offsets"][r["start_position"] - r["passage_start"]][0]
    e = r["offsets"][r["end_position"] - r["passage_start"]][1]
    assert context[s:e] == text


def test_long_question_is_cut_and_overlap_must_leave_a_step(tokenizer):
    ex = qa_example(" ".join(["what"] * 30), "aa bb cc")
    rows = encode_windows([ex], tokenizer, max_length=20, overlap=2, max_question_tokens=5)
    assert rows[0]["input_ids"][:7] == tokenizer("what " * 5)["input_ids"][:6] + [tokenizer.sep_token_id]
    with pytest.raises(SpecError, match=r"window_overlap_tokens: 13 leaves no step.*= 12 passage tokens"):
        encode_windows([ex], tokenizer, max_length=20, overlap=13, max_question_tokens=5)


def test_collect_and_decode_through_the_task(tokenizer):
    """The task's decode gathers windows by example and keeps ids."""
    task = ExtractiveQA(QAOptions(window_overlap_tokens=3, max_question_tokens=4))
    task.setup({"train": [qa_example("what", "aa bb", "bb", 3)]})
    assert task.allow_no_answer is False     # no unanswerable question in train
    words = (WORDS[:11] * 3)[:30]
    ex = task.example_from_record({"id": "q9", "question": "what is the answer",
                                   "context": " ".join(words)}, "p:1", labelled=False)
    rows = task.encode_all([ex], tokenizer, 20)
    results = []
    for i, r in enumerate(rows):   # every window prefers its first passage token; the last most
        start = [0.0] * len(r["input_ids"])
        start[r["passage_start"]] = float(i)
        results.append((start, list(start)))
    (pred,) = task.decode(results, rows, [ex])
    assert pred["id"] == "q9" and pred["text"] == words[20]   # window 3 starts at word 20


def test_truncation_counts_answers_no_window_holds_and_cut_questions(tokenizer):
    """Windows of words 0-12, 10-22, 20-29: words 9-13 straddle the first edge and are
    longer than the 3-token overlap, so no window holds them whole."""
    task = ExtractiveQA(QAOptions(window_overlap_tokens=3, max_question_tokens=4))
    words = (WORDS[:11] * 3)[:30]
    context = " ".join(words)

    def at(i, j):
        return " ".join(words[i:j + 1]), len(" ".join(words[:i])) + (1 if i else 0)

    lost = qa_example("what is the answer", context, *at(9, 13))
    kept = qa_example("what is the answer to what", context, *at(11, 14))
    none = qa_example("what", context)
    assert task.truncation([lost, kept, none], tokenizer, 20) == {"answers": (1, 2), "questions": (1, 3)}
    assert task.label_list(kept) is None
