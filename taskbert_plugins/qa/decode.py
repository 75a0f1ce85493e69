"""Windows over long passages and span decoding for ``extractive_qa``.

Pure functions on token ids, offsets and logits (no model), so they are tested with
hand-set numbers. Terms used throughout:

* a *window* (feature row) is ``[CLS] question [SEP] passage piece [SEP]``; position 0
  ([CLS]) stands for "no answer in this window";
* ``window_overlap_tokens``: passage tokens shared by two consecutive windows. The step
  from one window's first passage token to the next one's is the window's passage room
  minus this overlap. An answer of up to ``window_overlap_tokens + 1`` tokens is always
  wholly inside at least one window.
* offsets are character offsets into the original passage: ``start`` inclusive, ``end``
  exclusive, so ``context[start:end]`` is the answer text.
"""

import math

from taskbert import DataError, SpecError


def cut_questions(tokenizer, questions, max_tokens):
    """Questions cut to at most ``max_tokens`` tokens (cut in the text, at a token end),
    so every window keeps room for passage tokens."""
    enc = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True,
                    return_attention_mask=False)
    out = []
    for q, offsets in zip(questions, enc["offset_mapping"]):
        out.append(q[:offsets[max_tokens - 1][1]] if len(offsets) > max_tokens else q)
    return out


def passage_room(tokenizer, max_length, max_question_tokens, overlap):
    """Passage tokens per window in the worst case (longest question); raise SpecError
    when the overlap would not leave a step forward."""
    special = tokenizer.num_special_tokens_to_add(pair=True)
    room = max_length - max_question_tokens - special
    if room <= overlap:
        raise SpecError(
            f"task_options.window_overlap_tokens: {overlap} leaves no step between windows: "
            f"encoder.max_length {max_length} - max_question_tokens {max_question_tokens} - "
            f"{special} special tokens = {room} passage tokens per window; the overlap must be "
            f"smaller (lower it or max_question_tokens, or raise encoder.max_length)")
    return room


def answer_token_span(offsets, passage_start, char_start, char_end):
    """Token positions ``(start, end)`` (inclusive) of the answer characters
    ``[char_start, char_end)`` in a window, or ``(0, 0)`` ([CLS]) when the window does not
    hold the whole answer. ``offsets`` are the window's passage-token character offsets;
    ``passage_start`` is the position of its first passage token."""
    if not offsets or offsets[0][0] > char_start or offsets[-1][1] < char_end:
        return 0, 0
    first = 0
    while first < len(offsets) and offsets[first][1] <= char_start:
        first += 1
    last = len(offsets) - 1
    while last >= 0 and offsets[last][0] >= char_end:
        last -= 1
    if first > last:   # the answer falls between tokens (white space only)
        return 0, 0
    return passage_start + first, passage_start + last


def window_candidates(start_logits, end_logits, passage_start, offsets, n_best, max_answer_tokens):
    """Candidate answers of one window: ``(score, char_start, char_end)`` for the
    ``n_best`` best start and end positions inside the passage with start <= end and at
    most ``max_answer_tokens`` tokens; score = start logit + end logit."""
    positions = range(passage_start, passage_start + len(offsets))
    starts = sorted(positions, key=lambda i: -start_logits[i])[:n_best]
    ends = sorted(positions, key=lambda i: -end_logits[i])[:n_best]
    out = []
    for s in starts:
        for e in ends:
            if e < s or e - s + 1 > max_answer_tokens:
                continue
            out.append((start_logits[s] + end_logits[e],
                        offsets[s - passage_start][0], offsets[e - passage_start][1]))
    return out


def decode_answer(context, windows, n_best=20, max_answer_tokens=30, allow_no_answer=False,
                  null_score_threshold=0.0):
    """The answer to one question from all its windows.

    ``windows`` is a list of ``(start_logits, end_logits, passage_start, offsets)``.
    Candidates from every window are pooled (the same character span seen in two
    overlapping windows keeps its best score). The null score is the lowest [CLS] score
    over the windows (the window most sure an answer is there decides). With
    ``allow_no_answer``, the answer is empty when ``null score - best span score >
    null_score_threshold``.

    Returns ``{"text", "start", "end", "score", "probability"}``: ``probability`` is the
    softmax of the chosen score among the ``n_best`` best candidates (and the null answer
    when allowed); a null answer has ``text`` "" and ``start``/``end`` None.
    """
    best = {}
    null_score = None
    for start_logits, end_logits, passage_start, offsets in windows:
        null = start_logits[0] + end_logits[0]
        null_score = null if null_score is None else min(null_score, null)
        for score, s, e in window_candidates(start_logits, end_logits, passage_start, offsets,
                                             n_best, max_answer_tokens):
            if best.get((s, e), -math.inf) < score:
                best[(s, e)] = score
    ranked = sorted(((score, s, e) for (s, e), score in best.items()), reverse=True)[:n_best]
    pool = [score for score, _, _ in ranked]
    if allow_no_answer and null_score is not None:
        pool.append(null_score)
    top = max(pool, default=0.0)
    norm = sum(math.exp(v - top) for v in pool)
    choose_null = not ranked or (allow_no_answer and null_score is not None
                                 and null_score - ranked[0][0] > null_score_threshold)
    if choose_null:
        score = null_score if null_score is not None else 0.0
        prob = math.exp(score - top) / norm if allow_no_answer and norm else 0.0
        return {"text": "", "start": None, "end": None, "score": round(score, 6),
                "probability": round(prob, 6)}
    score, s, e = ranked[0]
    while s < e and context[s].isspace():   # byte-level BPE offsets may hold the space before a word
        s += 1
    while e > s and context[e - 1].isspace():
        e -= 1
    return {"text": context[s:e], "start": s, "end": e, "score": round(score, 6),
            "probability": round(math.exp(score - top) / norm, 6)}


def encode_windows(examples, tokenizer, max_length, overlap, max_question_tokens):
    """Feature rows (windows) for QA examples; each row carries ``example_index``,
    ``passage_start`` (position of its first passage token), ``offsets`` (character offsets
    of its passage tokens), ``passage_mask`` (1 on passage tokens) and, when the example
    has answers, ``start_position``/``end_position`` of the first answer (0 = [CLS] when
    this window does not hold it)."""
    if not getattr(tokenizer, "is_fast", False):
        raise SpecError("encoder.tokenizer: extractive_qa needs a fast (Rust) tokenizer for "
                        "character offsets; give a model folder with tokenizer.json")
    passage_room(tokenizer, max_length, max_question_tokens, overlap)
    if not examples:
        return []
    questions = cut_questions(tokenizer, [ex["question"].lstrip() for ex in examples], max_question_tokens)
    try:
        enc = tokenizer(questions, [ex["context"] for ex in examples], truncation="only_second",
                        max_length=max_length, stride=overlap, return_overflowing_tokens=True,
                        return_offsets_mapping=True, return_attention_mask=False)
    except Exception as exc:   # the Rust tokenizer's truncation errors are plain exceptions
        raise DataError(f"extractive_qa: cannot cut passages into windows of {max_length} tokens "
                        f"with an overlap of {overlap}: {exc}") from exc
    rows = []
    for f, ids in enumerate(enc["input_ids"]):
        i = enc["overflow_to_sample_mapping"][f]
        ex = examples[i]
        seq = enc.sequence_ids(f)
        passage = [k for k, s in enumerate(seq) if s == 1]
        passage_start = passage[0] if passage else len(ids)
        offsets = [tuple(enc["offset_mapping"][f][k]) for k in passage]
        row = {"input_ids": ids, "example_index": i, "passage_start": passage_start,
               "offsets": offsets, "passage_mask": [1 if s == 1 else 0 for s in seq]}
        if "token_type_ids" in enc:
            row["token_type_ids"] = enc["token_type_ids"][f]
        if ex.get("answers") is not None:
            if ex["answers"]:
                first = ex["answers"][0]
                span = answer_token_span(offsets, passage_start, first["start"],
                                         first["start"] + len(first["text"]))
            else:
                span = (0, 0)
            row["start_position"], row["end_position"] = span
        rows.append(row)
    return rows
