"""``token_classification``: one tag per word (POS, NER) from a per-token softmax.

Labels and predictions are always the user's words, never subwords. Each word is
tokenized on its own (``is_split_into_words``); its subtokens are trained on the word's
tag (the first subtoken only, or all of them: ``subword_labels``) and its prediction is
pooled from their logits (``word_pooling``: first, mean, max). A word that turns into no
subtokens at all (a zero-width space, a control character) is fed to the model as the
tokenizer's unknown token, so it keeps its place, gets a tag, and is reported.

Sentences longer than ``encoder.max_length`` become overlapping windows of whole words
(``taskbert_plugins.tagging.windows.word_windows``); each word is trained and predicted once, in
the window where it has the most context on both sides.

The head is ``BertForTokenClassification``'s (dropout, ``classifier``), so ``best/`` loads
with ``AutoModelForTokenClassification``.
"""

import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal, Optional

import torch

from taskbert import DataError, SpecError, Task, head_dropout
from taskbert_plugins.own_heads import drop_pooler, head_layout

from .entities import (
    char_offsets,
    entity_scores,
    entity_spans,
    invalid_transitions,
    tag_problem,
)
from .head import OwnTokenClassificationHead, TokenClassificationHead
from .windows import word_windows


@dataclass(frozen=True)
class TaggingOptions:
    tokens_field: str = field(default="tokens", metadata={
        "predict": True, "help": "record field holding the list of words"})
    tags_field: str = field(default="tags", metadata={"predict": True, "help": "record field holding one tag per word"})
    scheme: Literal["IOB2", "IOBES", "IOB1", "none"] = field(default="IOB2", metadata={
        "help": "entity tag scheme scored with seqeval; none for tags without spans (POS)"})
    labels: Optional[tuple[str, ...]] = field(default=None, metadata={
        "help": "tag names in order; default: a ClassLabel column's names, else sorted tags of the training data"})
    unseen_labels: Literal["error", "ignore"] = field(default="error", metadata={
        "help": "tags in validation/test missing from train: error, or ignore (scored as wrong)"})
    subword_labels: Literal["first", "all"] = field(default="first", metadata={
        "help": "train on the first subtoken of each word only, or on all of them"})
    word_pooling: Literal["first", "mean", "max"] = field(default="first", metadata={
        "help": "word prediction from its subtokens' logits: first, mean or max"})
    window_overlap: Optional[int] = field(default=None, metadata={"predict": True, "min": 0, "help":
        "subtokens shared by consecutive windows of a long sentence; default: half a window"})
    text_tokenizer: Literal["whitespace", "punctuation"] = field(default="whitespace", metadata={
        "predict": True, "help": "how `predict --format text` splits lines into words: at whitespace, or also "
                "punctuation off words"})
    dropout: Optional[float] = field(default=None, metadata={
        "min": 0, "max": 1, "help": "head dropout; default: the one the architecture's own head uses "
                                    "(classifier_dropout, else hidden_dropout_prob)"})


def special_tokens(tokenizer):
    """The ids the tokenizer puts before and after a single sequence (``[CLS]``, ``[SEP]``)."""
    enc = tokenizer([["a"]], is_split_into_words=True, add_special_tokens=True)
    ids, words = enc["input_ids"][0], enc.word_ids(0)
    first = words.index(0)
    last = len(words) - 1 - words[::-1].index(0)
    return ids[:first], ids[last + 1:]


def word_prefix(tokenizer):
    """What goes before each word so that it is tokenized as in running text: ``" "`` for a
    byte-level BPE tokenizer without ``add_prefix_space`` (RoBERTa, ModernBERT: a word split
    on its own would lose the space marker and read ``'lives'`` as ``'li', 've', 's'``),
    else ``""`` (WordPiece and SentencePiece mark word starts themselves). Found by a probe:
    the second word of ``"hello world"`` in running text against the same word given alone."""
    words = ["hello", "world"]
    running = tokenizer(" ".join(words), add_special_tokens=False, return_offsets_mapping=True)
    second = [t for t, (a, _) in zip(running["input_ids"], running["offset_mapping"]) if a >= len(words[0])]

    def alone(prefix):
        enc = tokenizer([[prefix + w for w in words]], is_split_into_words=True, add_special_tokens=False)
        return [t for t, w in zip(enc["input_ids"][0], enc.word_ids(0)) if w == 1]

    return " " if alone("") != second and alone(" ") == second else ""


def _listing(labels, most=12):
    shown = ", ".join(labels[:most])
    return shown + (f", ... ({len(labels)} in all)" if len(labels) > most else "")


class TokenClassification(Task):
    """One tag per word from a softmax over every token of the encoder's last layer."""

    name = "token_classification"
    description = "one tag per word (POS, NER) from a per-token softmax; word-level labels"
    Options = TaggingOptions
    hf_architecture = "BertForTokenClassification"
    report_labels = "per_word"
    pad_fields = {"labels": -100, "word_slot": -1}
    default_format = "conll"

    def __init__(self, options=None):
        super().__init__(options)
        self.labels = list(self.options.labels) if self.options.labels else None
        self.fallback_tag = None
        self._index = None  # tag -> class index, built from self.labels on first use
        self.entities = self.options.scheme != "none"
        # entity F1 picks the best NER model; token accuracy the best POS model
        self.default_metric = "f1" if self.entities else "accuracy"

    # ------------------------------------------------------------------ data
    def example_from_record(self, record, where, labelled=True):
        opts = self.options
        words = record.get(opts.tokens_field)
        if words is None:
            raise DataError(f"{where}: missing field {opts.tokens_field!r}; record has: "
                            f"{', '.join(map(str, record)) or 'nothing'} (set task_options.tokens_field)")
        if not isinstance(words, list) or not words:
            raise DataError(f"{where}: field {opts.tokens_field!r} must be a non-empty list of words, got {words!r}"[:300])
        for i, w in enumerate(words):
            if not isinstance(w, str):
                raise DataError(f"{where}: {opts.tokens_field}[{i}] must be a string, got {w!r}")
        tags = record.get(opts.tags_field)
        if tags is None and labelled:
            raise DataError(f"{where}: missing field {opts.tags_field!r}; record has: "
                            f"{', '.join(map(str, record)) or 'nothing'} (set task_options.tags_field)")
        if tags is not None:
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise DataError(f"{where}: field {opts.tags_field!r} must be a list of strings, got {tags!r}"[:300])
            if len(tags) != len(words):
                raise DataError(f"{where}: {len(words)} words but {len(tags)} tags; give one tag per word")
        example = {"tokens": words, "tags": tags, "where": where}
        if "_text" in record:  # from record_from_text: entity offsets refer to the raw line
            example["text"], example["offsets"] = record["_text"], record["_offsets"]
        return example

    def record_from_text(self, line):
        from tokenizers import pre_tokenizers

        split = (pre_tokenizers.WhitespaceSplit() if self.options.text_tokenizer == "whitespace"
                 else pre_tokenizers.Whitespace())  # Whitespace: \w+|[^\w\s]+
        pieces = split.pre_tokenize_str(line)
        return {self.options.tokens_field: [w for w, _ in pieces], "_text": line,
                "_offsets": [list(span) for _, span in pieces]}

    def data_labels(self, names):
        """Take a sequence-of-ClassLabel column's tag names, in id order, as the tags unless
        ``task_options.labels`` or a saved model gave them."""
        tags = names.get(self.options.tags_field)
        if self.labels is None and tags:
            self.labels = list(tags)

    def setup(self, examples):
        opts = self.options
        if self.labels is None:
            if "train" not in examples:
                return
            self.labels = sorted({t for ex in examples["train"] for t in ex["tags"]})
        self._index = None
        if self.entities:
            for label in self.labels:
                problem = tag_problem(label, opts.scheme)
                if problem and opts.labels:
                    raise DataError(f"task_options.labels: {problem}; set task_options.scheme "
                                    f"(IOB2, IOBES, IOB1, or none for tags without spans such as POS)")
        known = set(self.labels)
        source = "task_options.labels" if opts.labels else "the training data"
        for split, exs in examples.items():
            for ex in exs:
                for i, tag in enumerate(ex["tags"] or ()):
                    problem = tag_problem(tag, opts.scheme) if self.entities else None
                    if problem:
                        raise DataError(f"{ex['where']}: word {i + 1} {ex['tokens'][i]!r}: {problem}; set "
                                        f"task_options.scheme to your tags' scheme (IOB2, IOBES, IOB1), "
                                        f"or none for tags without spans such as POS")
                    if tag not in known and not (split != "train" and opts.unseen_labels == "ignore"):
                        raise DataError(f"{ex['where']}: word {i + 1} {ex['tokens'][i]!r}: tag {tag!r} is "
                                        f"not in {source} ({_listing(self.labels)}); set "
                                        f"task_options.unseen_labels: ignore to score it as always wrong")
        if len(self.labels) < 2:
            raise DataError(f"data.train: needs at least 2 distinct tags, found {self.labels}")
        counts = Counter(t for ex in examples.get("train", ()) for t in ex["tags"])
        self.fallback_tag = "O" if "O" in known else (counts.most_common(1)[0][0] if counts else self.labels[0])

    def check(self, examples, split, where):
        if not self.entities:
            return []
        found = [(ex["where"], msg) for ex in examples if ex["tags"]
                 for _, msg in invalid_transitions(ex["tags"], self.options.scheme)]
        if not found:
            return []
        shown = [f"{w}: invalid {self.options.scheme}: {msg}" for w, msg in found[:5]]
        sentences = len({w for w, _ in found})
        effect = ("conlleval-style scoring reads them as it can" if self.options.scheme == "IOB1"
                  else "strict scoring counts no entity there")
        return shown + [f"{where}: {len(found)} invalid {self.options.scheme} transitions in "
                        f"{sentences} sentences (first {len(shown)} shown); {effect}"]

    # -------------------------------------------------------------- encoding
    def window_budget(self, tokenizer, max_length):
        """``(prefix, suffix, budget, overlap)``: special token ids around a window, the
        subtokens a window holds, and those consecutive windows share."""
        prefix, suffix = special_tokens(tokenizer)
        budget = max_length - len(prefix) - len(suffix)
        overlap = self.options.window_overlap
        overlap = budget // 2 if overlap is None else overlap
        if overlap >= budget:
            raise SpecError(f"task_options.window_overlap: {overlap} must be smaller than the {budget} "
                            f"subtokens a window holds (encoder.max_length {max_length} minus "
                            f"{len(prefix) + len(suffix)} special tokens)")
        return prefix, suffix, budget, overlap

    def word_pieces(self, examples, tokenizer):
        """Per example, the subtoken ids of each word (one batched tokenizer call) and the
        indices of words that gave none; those get the unknown token (if the tokenizer has
        one) so they keep their place."""
        prefix = word_prefix(tokenizer)
        enc = tokenizer([[prefix + w for w in ex["tokens"]] if prefix else ex["tokens"] for ex in examples],
                        is_split_into_words=True,
                        add_special_tokens=False, return_attention_mask=False,
                        return_token_type_ids=False, verbose=False)
        unk = tokenizer.unk_token_id
        out = []
        for i, ex in enumerate(examples):
            pieces = [[] for _ in ex["tokens"]]
            for tid, w in zip(enc["input_ids"][i], enc.word_ids(i)):
                pieces[w].append(tid)
            empty = [w for w, p in enumerate(pieces) if not p]
            for w in empty:
                pieces[w] = [unk] if unk is not None else []
            out.append((pieces, empty))
        return out

    def encode_all(self, examples, tokenizer, max_length):
        prefix, suffix, budget, overlap = self.window_budget(tokenizer, max_length)
        rows, empty_seen = [], []
        for i, (ex, (pieces, empty)) in enumerate(zip(examples, self.word_pieces(examples, tokenizer))):
            empty_seen.extend((ex, w) for w in empty)
            pieces = [p[:budget] for p in pieces]  # a word longer than a window keeps its start
            tags = ex["tags"]
            label_ids = [self.label_id(t) for t in tags] if tags is not None else [-100] * len(pieces)
            for win in word_windows([len(p) for p in pieces], budget, overlap):
                if win.owned:
                    rows.append(self._window_row(i, win, pieces, label_ids, prefix, suffix, empty))
        if empty_seen:
            ex, w = empty_seen[0]
            print(f"warning: {len(empty_seen)} words give no subword tokens (first: {ex['tokens'][w]!r}, "
                  f"word {w + 1} at {ex['where']}); each is read as {tokenizer.unk_token or 'nothing'} "
                  f"and still gets a tag (listed under no_tokens in its prediction)", file=sys.stderr)
        return rows

    def truncation(self, examples, tokenizer, max_length):
        """Long sentences are windowed, so no word is lost; only a single word with more
        subtokens than a window holds is cut (to its first subtokens)."""
        budget = self.window_budget(tokenizer, max_length)[2]
        lengths = [len(p) for pieces, _ in self.word_pieces(examples, tokenizer) for p in pieces]
        return {"words": (sum(n > budget for n in lengths), len(lengths))}

    def _window_row(self, index, win, pieces, label_ids, prefix, suffix, empty):
        """The feature row of one window: token ids, training labels of the words it owns,
        and for each of its tokens the slot (0..) of the owned word it belongs to."""
        every = self.options.subword_labels == "all"
        slot_of = {w: k for k, w in enumerate(win.owned)}
        ids, labels, slots, firsts = list(prefix), [-100] * len(prefix), [-1] * len(prefix), []
        for w in range(win.start, win.end):
            p = pieces[w]
            k = slot_of.get(w)
            if k is None or not p:  # context only, or a word with no token at all
                labels += [-100] * len(p)
                slots += [-1] * len(p)
            else:
                firsts.append(len(ids))
                labels += [label_ids[w]] + [label_ids[w] if every else -100] * (len(p) - 1)
                slots += [k] * len(p)
            ids += p
        ids += suffix
        labels += [-100] * len(suffix)
        slots += [-1] * len(suffix)
        return {"input_ids": ids, "labels": labels, "word_slot": slots, "example_index": index,
                "owned_words": list(win.owned), "first_positions": firsts,
                "no_tokens": [w for w in empty if w in slot_of]}

    def label_id(self, tag):
        """The class index of a tag; -100 (not trained, scored as wrong) when unknown."""
        if self._index is None:
            self._index = {t: i for i, t in enumerate(self.labels)}
        return self._index.get(tag, -100)

    # ----------------------------------------------------------------- model
    def build_head(self, encoder):
        cfg = encoder.config
        layout = head_layout(self, cfg, "token")
        if layout == "own":   # the architecture's own layout, so best/ reloads as is
            head = OwnTokenClassificationHead(encoder, len(self.labels), self.options.dropout,
                                              self.options.word_pooling)
            self.hf_architecture = head.architecture
            return head
        dropout = self.options.dropout if self.options.dropout is not None else head_dropout(cfg, "token")
        if layout == "bert":
            drop_pooler(encoder)   # BertForTokenClassification has none
        return TokenClassificationHead(cfg.hidden_size, len(self.labels), dropout, self.options.word_pooling)

    # --------------------------------------------------------------- outputs
    def collect(self, out, batch):
        logits = out["logits"].float()                    # (batch, seq, labels)
        slots = batch["word_slot"]                        # (batch, seq), -1 = no owned word
        n_labels = logits.size(-1)
        results = []
        for r, owned in enumerate(batch["owned_words"]):
            pooled = torch.zeros(len(owned), n_labels, device=logits.device)   # (words, labels)
            has = torch.zeros(len(owned), dtype=torch.bool, device=logits.device)
            valid = slots[r] >= 0
            if self.options.word_pooling == "first":
                pos = torch.tensor(batch["first_positions"][r], dtype=torch.long, device=logits.device)
                at = slots[r][pos]
                pooled[at] = logits[r, pos]
                has[at] = True
            elif bool(valid.any()):
                idx = slots[r][valid]
                reduce = "mean" if self.options.word_pooling == "mean" else "amax"
                pooled = pooled.scatter_reduce(0, idx[:, None].expand(-1, n_labels), logits[r][valid],
                                               reduce=reduce, include_self=False)
                has[idx] = True
            probs = torch.softmax(pooled, dim=-1)
            best = probs.argmax(-1)
            results.append([(w, int(best[k]) if has[k] else None, float(probs[k, best[k]]) if has[k] else None)
                            for k, w in enumerate(owned)])
        return results

    def decode(self, results, rows, examples):
        tags = [[None] * len(ex["tokens"]) for ex in examples]
        scores = [[None] * len(ex["tokens"]) for ex in examples]
        empty = [set() for _ in examples]
        for row, res in zip(rows, results):
            i = row["example_index"]
            empty[i].update(row["no_tokens"])
            for w, t, p in res:
                if tags[i][w] is not None:  # windows own disjoint words; this is a bug if hit
                    raise RuntimeError(f"{examples[i]['where']}: word {w + 1} predicted twice")
                tags[i][w] = self.labels[t] if t is not None else self.fallback_tag
                scores[i][w] = round(p, 4) if p is not None else None
        out = []
        for i, ex in enumerate(examples):
            if any(t is None for t in tags[i]):
                raise RuntimeError(f"{ex['where']}: a word got no prediction")  # a bug if hit
            pred = {"words": ex["tokens"], "tags": tags[i], "scores": scores[i]}
            if self.entities:
                text, spans = char_offsets(ex["tokens"], ex.get("text"), ex.get("offsets"))
                pred["text"] = text
                pred["entities"] = [
                    {"type": kind, "start": spans[s][0], "end": spans[e - 1][1],
                     "text": text[spans[s][0]:spans[e - 1][1]], "words": [s, e]}
                    for kind, s, e in entity_spans(tags[i], self.options.scheme)]
            if empty[i]:
                pred["no_tokens"] = sorted(empty[i])
            out.append(pred)
        return out

    def reported_metrics(self):
        return ["accuracy", "precision", "recall", "f1"] if self.entities else ["accuracy"]

    def score(self, predictions, examples):
        pairs = [(ex["tags"], p["tags"]) for p, ex in zip(predictions, examples) if ex["tags"] is not None]
        if not pairs:
            return {}
        words = sum(len(g) for g, _ in pairs)
        metrics = {"accuracy": sum(a == b for g, p in pairs for a, b in zip(g, p)) / max(1, words)}
        if self.entities:
            metrics.update(entity_scores([g for g, _ in pairs], [p for _, p in pairs], self.options.scheme))
        return metrics

    def gold(self, example):
        return example.get("tags")

    # ----------------------------------------------------------------- state
    def state_dict(self):
        return {"labels": self.labels, "fallback_tag": self.fallback_tag,
                "head_layout": getattr(self, "head_layout", None)}

    def load_state_dict(self, state):
        self.labels, self._index = state["labels"], None
        self.fallback_tag = state.get("fallback_tag")
        self.head_layout = state.get("head_layout", "legacy")

    def hf_config(self):
        return {"id2label": {str(i): t for i, t in enumerate(self.labels)},
                "label2id": {t: i for i, t in enumerate(self.labels)},
                "num_labels": len(self.labels)}
