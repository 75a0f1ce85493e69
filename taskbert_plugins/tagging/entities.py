"""Entity tag schemes (IOB2, IOBES, IOB1): checking tags, finding spans, scoring.

Scoring is seqeval's. IOB2 and IOBES are scored in seqeval's strict mode (an entity
counts only when it is well formed and matches exactly); IOB1, where ``I-`` may open an
entity, is scored as conlleval does (seqeval's default mode), which is how IOB1 is defined.
Spans in predictions come from the same functions, so what is shown is what is scored.
"""

import warnings

PREFIXES = {"IOB2": ("B", "I"), "IOB1": ("B", "I"), "IOBES": ("B", "I", "E", "S")}
SCHEMES = tuple(PREFIXES)


def split_tag(tag):
    """``"B-geo-loc"`` -> ``("B", "geo-loc")``; ``"O"`` -> ``("O", None)``; a tag with no
    ``X-`` prefix -> ``(None, tag)``."""
    if tag == "O":
        return "O", None
    prefix, dash, kind = tag.partition("-")
    if dash and len(prefix) == 1 and kind:
        return prefix, kind
    return None, tag


def tag_problem(tag, scheme):
    """Why ``tag`` is not a tag of ``scheme`` (a short phrase), or None when it is."""
    prefix, _ = split_tag(tag)
    if prefix == "O":
        return None
    allowed = PREFIXES[scheme]
    if prefix in allowed:
        return None
    shapes = ", ".join(f"{p}-TYPE" for p in allowed)
    return f"tag {tag!r} is not a {scheme} tag (O, {shapes})"


def invalid_transitions(tags, scheme):
    """``[(word_index, message)]`` for each place where ``tags`` break ``scheme``'s rules,
    e.g. ``I-PER`` after ``O`` in IOB2 (tags with a wrong prefix are not reported here)."""
    problems = []
    prev_p, prev_k, prev = "O", None, "the sentence start"
    for i, tag in enumerate(tags):
        p, k = split_tag(tag)
        continues = prev_p in ("B", "I") and prev_k == k
        bad = False
        if scheme == "IOB2":
            bad = p == "I" and not continues
        elif scheme == "IOB1":
            bad = p == "B" and not continues
        elif scheme == "IOBES":
            open_before = prev_p in ("B", "I")
            bad = (p in ("I", "E") and not continues) or (p not in ("I", "E") and open_before)
        if bad:
            problems.append((i, f"word {i + 1} {tag!r} after {prev!r}"))
        prev_p, prev_k, prev = p, k, tag
    if scheme == "IOBES" and prev_p in ("B", "I"):
        problems.append((len(tags) - 1, f"the sentence ends inside an entity ({prev!r})"))
    return problems


def _seqeval_scheme(scheme):
    from seqeval.scheme import IOB2, IOBES

    return {"IOB2": IOB2, "IOBES": IOBES}.get(scheme)


def entity_spans(tags, scheme):
    """``[(type, start, end)]`` word spans (``end`` exclusive) of the entities in ``tags``."""
    strict = _seqeval_scheme(scheme)
    if strict is not None:
        from seqeval.scheme import Tokens

        return [(e.tag, e.start, e.end) for e in Tokens(list(tags), strict).entities]
    from seqeval.metrics.sequence_labeling import get_entities

    return [(kind, start, end + 1) for kind, start, end in get_entities(list(tags))]


def entity_scores(golds, preds, scheme):
    """Entity precision, recall and F1 (micro over all entities) and the same per type,
    with its gold count, under ``by_type``."""
    from seqeval.metrics import classification_report

    strict = _seqeval_scheme(scheme)
    kwargs = {"mode": "strict", "scheme": strict} if strict is not None else {}
    with warnings.catch_warnings():   # no gold entity at all: numpy warns about empty means
        warnings.simplefilter("ignore", RuntimeWarning)
        report = classification_report([list(g) for g in golds], [list(p) for p in preds],
                                       output_dict=True, zero_division=0, **kwargs)
    overall = report.get("micro avg", {})
    out = {"precision": float(overall.get("precision", 0.0)),
           "recall": float(overall.get("recall", 0.0)),
           "f1": float(overall.get("f1-score", 0.0))}
    out["by_type"] = {
        kind: {"precision": float(v["precision"]), "recall": float(v["recall"]),
               "f1": float(v["f1-score"]), "support": int(v["support"])}
        for kind, v in sorted(report.items()) if not kind.endswith(" avg")}
    return out


def char_offsets(words, text=None, offsets=None):
    """The text that entity offsets refer to and each word's ``(start, end)`` in it:
    the given ones, or the words joined by single spaces."""
    if text is not None and offsets is not None:
        return text, [tuple(o) for o in offsets]
    spans, pos = [], 0
    for w in words:
        spans.append((pos, pos + len(w)))
        pos += len(w) + 1
    return " ".join(words), spans
