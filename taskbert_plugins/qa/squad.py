"""The SQuAD file layout and the SQuAD metrics, for ``extractive_qa``.

* :func:`read_squad` reads the SQuAD v1.1 / v2.0 JSON layout
  (``{"data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question",
  "answers": [{"text", "answer_start"}], "is_impossible"}]}]}]}``) into the same records
  as the jsonl layout: ``{id, question, context, answers: {text: [...], answer_start: [...]}}``.
  A record's locator is its JSON path (``data[0].paragraphs[3].qas[1]``), since a JSON
  file has no line per question.
* :func:`exact_match` and :func:`f1` follow the official SQuAD v2.0 evaluation script:
  answers are normalised (lower case, punctuation and the articles a/an/the removed,
  white space collapsed), the score of a question is the best over its gold answers, and
  a question without gold answers counts as right only when the prediction is empty.
  Scores are fractions (0-1) like every other taskbert metric; the official script
  prints percentages.
"""

import collections
import json
import re
import string

from taskbert import DataError
from taskbert_plugins.readers import DuplicateKey, check_options, unique_keys

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text):
    """Lower case, drop punctuation and articles, collapse white space (SQuAD's rule)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_tokens(text):
    """The normalised words of an answer."""
    return normalize_answer(text).split() if text else []


def exact_score(gold, pred):
    """1 when the normalised texts are equal, else 0."""
    return int(normalize_answer(gold) == normalize_answer(pred))


def f1_score(gold, pred):
    """Word-overlap F1 of two answers; two empty answers score 1, one empty scores 0."""
    gold_toks, pred_toks = answer_tokens(gold), answer_tokens(pred)
    if not gold_toks or not pred_toks:
        return float(gold_toks == pred_toks)
    common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_toks), same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def _best(fn, golds, pred):
    # as the official script: golds that normalise to nothing are left out, and a question
    # without answers (SQuAD v2.0) has the single gold answer ""
    golds = [g for g in golds if normalize_answer(g)] or [""]
    return max(fn(g, pred) for g in golds)


def exact_match(golds, preds):
    """Mean over questions of the best exact match against any gold answer.

    ``golds`` is a list of lists of answer texts (empty list: unanswerable), ``preds`` a
    list of predicted texts ("" = no answer).
    """
    return sum(_best(exact_score, g, p) for g, p in zip(golds, preds)) / max(1, len(golds))


def f1(golds, preds):
    """Mean over questions of the best word-overlap F1 against any gold answer."""
    return sum(_best(f1_score, g, p) for g, p in zip(golds, preds)) / max(1, len(golds))


def squad_metrics(golds, preds):
    """``exact_match`` and ``f1`` over all questions, and when the golds mix answerable and
    unanswerable questions (SQuAD v2.0) also ``has_ans_*`` / ``no_ans_*`` on each part,
    with ``has_ans_total`` / ``no_ans_total`` counts."""
    out = {"exact_match": exact_match(golds, preds), "f1": f1(golds, preds)}
    has = [i for i, g in enumerate(golds) if g]
    no = [i for i, g in enumerate(golds) if not g]
    if no:
        for name, idx in (("has_ans", has), ("no_ans", no)):
            if idx:
                part_g, part_p = [golds[i] for i in idx], [preds[i] for i in idx]
                out[f"{name}_exact_match"] = exact_match(part_g, part_p)
                out[f"{name}_f1"] = f1(part_g, part_p)
            out[f"{name}_total"] = len(idx)
    return out


def _text(obj, key, where, what):
    """``obj[key]`` must be a string: the layout fixes the field names, so a missing one is
    the file's fault, not an option's."""
    value = obj.get(key)
    if not isinstance(value, str):
        found = f"no {key!r}" if value is None else f"{key!r} is {value!r:.40}, not text"
        raise DataError(f"{where}: {found} (a SQuAD {what} needs a {key} string)")


def read_squad(path, options):
    """SQuAD v1.1/v2.0 JSON: one record per question (locator: its JSON path).

    ``is_impossible: true`` questions get no answers (their ``plausible_answers`` are not
    gold answers).
    """
    check_options(path, options, ("encoding",))
    try:
        encoding = options.get("encoding", "utf-8")
        with open(path, encoding="utf-8-sig" if encoding.lower().replace("_", "-") == "utf-8" else encoding) as fh:
            doc = json.load(fh, object_pairs_hook=unique_keys)
    except DuplicateKey as exc:
        raise DataError(f"{path}: key {exc.args[0]!r} appears twice in one JSON object; keep one "
                        f"(JSON would keep the last silently)") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg.removesuffix(' at')} at column {exc.colno})") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid {options.get('encoding', 'utf-8')} (byte {exc.start}); "
                        f"convert the file to UTF-8") from None
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list):
        raise DataError(f"{path}: not the SQuAD layout: expected an object with a \"data\" list of "
                        f"articles ({{\"data\": [{{\"paragraphs\": [{{\"context\", \"qas\"}}]}}]}}); "
                        f"for one question per line use a .jsonl file")
    for a, article in enumerate(data):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            raise DataError(f"{path}:data[{a}]: expected an object with a \"paragraphs\" list")
        for p, para in enumerate(paragraphs):
            qas = para.get("qas") if isinstance(para, dict) else None
            if not isinstance(qas, list):
                raise DataError(f"{path}:data[{a}].paragraphs[{p}]: expected an object with "
                                f"\"context\" and a \"qas\" list")
            _text(para, "context", f"{path}:data[{a}].paragraphs[{p}]", "paragraph")
            for q, qa in enumerate(qas):
                loc = f"data[{a}].paragraphs[{p}].qas[{q}]"
                if not isinstance(qa, dict):
                    raise DataError(f"{path}:{loc}: expected a question object, got {qa!r:.60}")
                _text(qa, "question", f"{path}:{loc}", "question")
                impossible = qa.get("is_impossible", False)
                if not isinstance(impossible, bool):   # "false" would be truthy: gold answers lost
                    raise DataError(f"{path}:{loc}: \"is_impossible\" must be true or false, got "
                                    f"{impossible!r:.40}")
                answers = [] if impossible else qa.get("answers", [])
                if not isinstance(answers, list) or not all(isinstance(x, dict) for x in answers):
                    raise DataError(f"{path}:{loc}: \"answers\" must be a list of "
                                    f"{{\"text\", \"answer_start\"}} objects, got {answers!r:.60}")
                yield loc, {
                    "id": qa.get("id"), "title": article.get("title"), "question": qa.get("question"),
                    "context": para.get("context"),
                    "answers": {"text": [x.get("text") for x in answers],
                                "answer_start": [x.get("answer_start") for x in answers]},
                }
