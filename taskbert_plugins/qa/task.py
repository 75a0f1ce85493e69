"""``extractive_qa``: the answer to a question as a span of its passage (SQuAD v1.1/v2.0).

Each question and its passage become one or more windows ``[CLS] question [SEP] passage
piece [SEP]`` (see :mod:`taskbert_plugins.qa.decode` for the window knobs). The head is
``BertForQuestionAnswering``'s: one linear layer giving a start and an end logit per token,
with logits outside the passage masked (position 0, [CLS], is the "no answer" choice), so
``best/`` loads with ``AutoModelForQuestionAnswering``. Training targets the first gold
answer; windows that do not hold it target [CLS]. Decoding pools the n-best spans of every
window and maps them back to character offsets in the passage.

This module also registers the ``squad`` reader and the ``squad_exact_match`` /
``squad_f1`` metrics (:mod:`taskbert_plugins.qa.squad`).
"""

from dataclasses import dataclass, field
from typing import Literal, Optional

from torch import nn

from taskbert import DataError, Head, Task
from taskbert_plugins.classification import is_blank
from taskbert_plugins.own_heads import OwnHead, drop_pooler, head_layout

from . import decode as qa_decode
from . import squad

MAX_LISTED = 100   # answer mismatches listed one per line by validate; the rest are counted


@dataclass(frozen=True)
class QAOptions:
    """``task_options`` of ``extractive_qa``."""

    question_field: str = field(default="question", metadata={
        "predict": True, "help": "record field holding the question"})
    context_field: str = field(default="context", metadata={
        "predict": True, "help": "record field holding the passage"})
    answers_field: str = field(default="answers", metadata={"predict": True, 
        "help": "record field holding {text: [...], answer_start: [...]} (empty lists: unanswerable)"})
    id_field: str = field(default="id", metadata={
        "predict": True, "help": "record field holding the question id (optional)"})
    window_overlap_tokens: int = field(default=32, metadata={"predict": True, 
        "min": 0, "help": "passage tokens shared by consecutive windows of a long passage"})
    max_question_tokens: int = field(default=64, metadata={"predict": True, 
        "min": 1, "help": "longer questions are cut to this many tokens"})
    max_answer_tokens: int = field(default=30, metadata={"predict": True, 
        "min": 1, "help": "longest answer span decoding considers, in tokens"})
    n_best: int = field(default=20, metadata={"predict": True, 
        "min": 1, "help": "best start and end positions per window combined into candidates"})
    allow_no_answer: Optional[bool] = field(default=None, metadata={
        "help": "may predict 'no answer' (SQuAD v2.0); default: true when the training data has "
                "unanswerable questions"})
    null_score_threshold: float = field(default=0.0, metadata={"predict": True, 
        "help": "answer 'no answer' when null score - best span score > this"})
    answer_mismatch: Literal["warn", "error"] = field(default="warn", metadata={
        "help": "an answer text that differs from the passage at its answer_start: warn (listed "
                "by validate and run, trained at its offset) or error"})


class QAHead(Head):
    """A linear layer giving start and end logits per token (``BertForQuestionAnswering``);
    the mean of the start and end cross-entropies when the batch holds the answer positions."""

    def __init__(self, hidden_size):
        super().__init__()
        self.qa_outputs = nn.Linear(hidden_size, 2)

    def forward(self, encoder_out, batch):
        logits = self.qa_outputs(encoder_out.last_hidden_state)   # (batch, seq, 2)
        start, end = logits.float().unbind(-1)                     # (batch, seq) each
        return span_output(start, end, batch)


class OwnQAHead(OwnHead):
    """The architecture's own question-answering head (see :mod:`taskbert_plugins.own_heads`),
    with the same passage mask and loss."""

    kind = "qa"

    def __init__(self, encoder):
        super().__init__(encoder, num_labels=2)   # start and end

    def forward(self, encoder_out, batch):
        own = self.own_output(encoder_out, batch)
        return span_output(own.start_logits.float(), own.end_logits.float(), batch)


def span_output(start, end, batch):
    """Start and end logits ``(batch, seq)`` kept to the passage and ``[CLS]``, and the mean of
    their cross-entropies when the batch holds the answer positions."""
    allowed = batch["passage_mask"].bool()
    allowed[:, 0] = True                                       # [CLS] = no answer here
    # the softmax then only spreads over passage tokens and [CLS]
    out = {"start_logits": start.masked_fill(~allowed, -1e4),
           "end_logits": end.masked_fill(~allowed, -1e4)}
    if "start_position" in batch:
        ce = nn.functional.cross_entropy
        out["loss"] = (ce(out["start_logits"], batch["start_position"]) +
                       ce(out["end_logits"], batch["end_position"])) / 2
    return out


class ExtractiveQA(Task):
    """A span of the passage answers the question, or no answer (SQuAD v2.0)."""

    name = "extractive_qa"
    description = "the answer to a question as a span of its passage (SQuAD v1.1/v2.0)"
    Options = QAOptions
    default_metric = "f1"
    pad_fields = {"passage_mask": 0}
    hf_architecture = "BertForQuestionAnswering"
    report_labels = None   # answers are spans
    default_format = "squad"

    def __init__(self, options=None):
        super().__init__(options)
        self.allow_no_answer = self.options.allow_no_answer

    # ----------------------------------------------------------------- data
    def _field(self, record, key, where, option):
        name = getattr(self.options, option)
        value = record.get(name)
        if not isinstance(value, str):
            what = "missing" if value is None else f"not text ({value!r:.40})"
            raise DataError(f"{where}: field {name!r} is {what}; record has: "
                            f"{', '.join(map(str, record)) or 'nothing'} (set task_options.{option})")
        if is_blank(value):   # as for the text tasks: nothing to ask about, or nothing to search
            raise DataError(f"{where}: field {name!r} is empty (got {value!r}); a {key} needs at least "
                            f"one character besides white space, control and zero-width ones")
        return value

    def record_from_text(self, line):
        raise DataError("extractive_qa: a question needs its passage, which one text line cannot "
                        "hold; give a .jsonl file ({\"question\": ..., \"context\": ...} a line) "
                        "or SQuAD .json")

    def _answers(self, record, where, qid, context):
        """Gold answers as ``[{text, start}]`` and the ones that do not match the passage."""
        raw = record[self.options.answers_field]
        if isinstance(raw, dict):
            texts, starts = raw.get("text"), raw.get("answer_start")
        elif isinstance(raw, list) and all(isinstance(a, dict) for a in raw):
            texts = [a.get("text") for a in raw]
            starts = [a.get("answer_start") for a in raw]
        else:
            texts = starts = None
        if not isinstance(texts, list) or not isinstance(starts, list) or len(texts) != len(starts):
            raise DataError(f"{where}: question {qid!r}: field {self.options.answers_field!r} must be "
                            f"{{\"text\": [...], \"answer_start\": [...]}} with lists of equal length, "
                            f"got {raw!r:.80}")
        answers, mismatches = [], []
        for text, start in zip(texts, starts):
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"{where}: question {qid!r}: answer text {text!r} must be non-empty "
                                f"text; give empty lists for an unanswerable question")
            if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start <= len(context) - len(text):
                raise DataError(f"{where}: question {qid!r}: answer_start {start!r} of {text!r} is not an "
                                f"offset inside the passage (0..{max(0, len(context) - len(text))})")
            found = context[start:start + len(text)]
            if found != text:
                if self.options.answer_mismatch == "error":
                    raise DataError(f"{where}: question {qid!r}: answer {text!r} does not match the passage "
                                    f"at answer_start {start} ({found!r}); fix the offset or set "
                                    f"task_options.answer_mismatch: warn")
                mismatches.append((text, start, found))
            answers.append({"text": text, "start": start})
        return answers, mismatches

    def example_from_record(self, record, where, labelled=True):
        qid = record.get(self.options.id_field)
        question = self._field(record, "question", where, "question_field")
        context = self._field(record, "context", where, "context_field")
        answers, mismatches = None, []
        if record.get(self.options.answers_field) is not None:
            answers, mismatches = self._answers(record, where, qid if qid is not None else where, context)
        elif labelled:
            raise DataError(f"{where}: missing field {self.options.answers_field!r}; record has: "
                            f"{', '.join(map(str, record)) or 'nothing'} (set task_options.answers_field; "
                            f"an unanswerable question has {{\"text\": [], \"answer_start\": []}})")
        return {"id": qid, "question": question, "context": context, "answers": answers,
                "mismatches": mismatches, "where": where}

    def setup(self, examples):
        if self.allow_no_answer is None:
            source = examples.get("train") or [ex for exs in examples.values() for ex in exs]
            self.allow_no_answer = any(ex["answers"] == [] for ex in source)

    def check(self, examples, split, where):
        """One line per answer whose text differs from the passage at its offset (with the
        question id), up to MAX_LISTED, then a count."""
        found = [(ex, m) for ex in examples for m in ex["mismatches"]]
        lines = []
        for ex, (text, start, got) in found[:MAX_LISTED]:
            qid = ex["id"] if ex["id"] is not None else "(no id)"
            lines.append(f"{ex['where']}: question {qid!r}: answer {text!r} does not match the passage "
                         f"at answer_start {start} ({got!r}); it is kept and trained at that offset")
        if len(found) > MAX_LISTED:
            lines.append(f"{where}: {len(found) - MAX_LISTED} more answers do not match the passage "
                         f"({len(found)} in all)")
        return lines

    def check_encoding(self, tokenizer, max_length, config):
        """The window overlap must leave a step forward in windows of ``max_length``
        (checked again when the data is encoded)."""
        o = self.options
        qa_decode.passage_room(tokenizer, max_length, o.max_question_tokens, o.window_overlap_tokens)

    def encode_all(self, examples, tokenizer, max_length):
        o = self.options
        return qa_decode.encode_windows(examples, tokenizer, max_length, o.window_overlap_tokens,
                                        o.max_question_tokens)

    def truncation(self, examples, tokenizer, max_length):
        """Windows keep whole passages, so what is lost is: answers that no window holds
        whole (longer than ``window_overlap_tokens + 1`` tokens and across a window
        edge), and questions longer than ``max_question_tokens``."""
        held = {r["example_index"] for r in self.encode_all(examples, tokenizer, max_length)
                if r.get("start_position")}
        answerable = [i for i, ex in enumerate(examples) if ex["answers"]]
        lengths = tokenizer([ex["question"] for ex in examples], add_special_tokens=False,
                            return_attention_mask=False)["input_ids"]
        return {"answers": (sum(i not in held for i in answerable), len(answerable)),
                "questions": (sum(len(q) > self.options.max_question_tokens for q in lengths),
                              len(examples))}

    def label_list(self, example):
        """Answers are spans, not categories: no label distribution."""
        return None

    # ---------------------------------------------------------------- model
    def build_head(self, encoder):
        layout = head_layout(self, encoder.config, "qa")
        if layout == "own":
            head = OwnQAHead(encoder)
            self.hf_architecture = head.architecture
            return head
        if layout == "bert":
            drop_pooler(encoder)   # BertForQuestionAnswering has none
        return QAHead(encoder.config.hidden_size)

    # -------------------------------------------------------------- outputs
    def collect(self, out, batch):
        lengths = batch["attention_mask"].sum(1).tolist()
        starts, ends = out["start_logits"].cpu().tolist(), out["end_logits"].cpu().tolist()
        return [(s[:n], e[:n]) for s, e, n in zip(starts, ends, lengths)]

    def decode(self, results, rows, examples):
        windows = [[] for _ in examples]
        for row, (start_logits, end_logits) in zip(rows, results):
            windows[row["example_index"]].append(
                (start_logits, end_logits, row["passage_start"], row["offsets"]))
        o = self.options
        out = []
        for ex, wins in zip(examples, windows):
            answer = qa_decode.decode_answer(ex["context"], wins, o.n_best, o.max_answer_tokens,
                                             bool(self.allow_no_answer), o.null_score_threshold)
            out.append({"id": ex["id"], **answer})   # id None when the input has none
        return out

    def score(self, predictions, examples):
        golds = [[a["text"] for a in ex["answers"]] for ex in examples]
        return squad.squad_metrics(golds, [p["text"] for p in predictions])

    def gold(self, example):
        return [a["text"] for a in example["answers"]] if example["answers"] is not None else None

    # ---------------------------------------------------------------- state
    def state_dict(self):
        return {"allow_no_answer": self.allow_no_answer, "head_layout": getattr(self, "head_layout", None)}

    def load_state_dict(self, state):
        self.allow_no_answer = state.get("allow_no_answer", self.allow_no_answer)
        self.head_layout = state.get("head_layout", "legacy")
