"""``feature_tagging``: one tag per word from frozen-encoder features and a light head.

Reading, labels, windows over long sentences, decoding and scoring are the
``token_classification`` task's (``taskbert_plugins.tagging``): a sentence longer than
``max_length`` becomes windows of whole words and each word takes its features from the
window that owns it. What changes is the model: the subtokens of each owned word are
pooled (first / mean / last) into one vector per chosen layer, cached, combined, and fed to
a linear layer or a two-layer BiLSTM that predicts one tag per word.
"""

from dataclasses import dataclass, field
from typing import Literal

import torch

from taskbert_plugins.tagging import TaggingOptions, TokenClassification

from .heads import TagFeatureHead
from .task import FeatureOptions, FeatureTask


@dataclass(frozen=True)
class FeatureTaggingOptions(TaggingOptions, FeatureOptions):
    """Options of ``feature_tagging`` (``subword_labels`` and ``word_pooling`` belong to
    fine-tuning; here ``pooling`` says how a word's subtokens become its feature)."""

    pooling: Literal["first", "mean", "last"] = field(default="first", metadata={
        "help": "a word's feature from its subtokens: the first, their mean, or the last"})
    head: Literal["linear", "bilstm"] = field(default="linear", metadata={
        "help": "linear layer per word, or a two-layer BiLSTM of head_hidden units per direction"})

    def __post_init__(self):
        if self.subword_labels != "first" or self.word_pooling != "first":
            raise ValueError("subword_labels and word_pooling apply to token_classification; "
                             "feature_tagging pools subtokens with pooling: first, mean or last")


class FeatureTagging(FeatureTask, TokenClassification):
    """One tag per word from cached frozen-encoder features and a linear/BiLSTM head."""

    name = "feature_tagging"
    description = "one tag per word (POS, NER) from frozen-encoder features (cached) and a linear or BiLSTM head"
    Options = FeatureTaggingOptions
    pad_fields = {**TokenClassification.pad_fields, "word_labels": -100}

    def encode_all(self, examples, tokenizer, max_length):
        rows = TokenClassification.encode_all(self, examples, tokenizer, max_length)
        for row in rows:
            spans = [None] * len(row["owned_words"])
            for pos, slot in enumerate(row["word_slot"]):
                if slot >= 0:
                    if spans[slot] is None:
                        spans[slot] = [pos, pos + 1]
                    else:
                        spans[slot][1] = pos + 1
            # the first subtoken of an owned word carries the word's label
            row["word_labels"] = [row["labels"][s[0]] if s else -100 for s in spans]
            row["unit_spans"] = [s or [0, 1] for s in spans]   # a word with no subtoken reads [CLS]
        return rows

    def unit_names(self, row, example):
        return [example["tokens"][w] for w in row["owned_words"]]

    def build_head(self, encoder):
        self.configure(encoder)
        cfg = encoder.config
        dropout = self.head_dropout(cfg)
        return self.feature_head(TagFeatureHead(
            self.options.layers, len(self.layer_ids), cfg.hidden_size, len(self.labels or ()),
            self.options.head, self.options.head_hidden, dropout))

    def collect(self, out, batch):
        probs = torch.softmax(out["logits"].float(), dim=-1)   # (batch, words, labels)
        best = probs.argmax(-1)
        results = []
        for r, owned in enumerate(batch["owned_words"]):
            results.append([(w, int(best[r, k]), float(probs[r, k, best[r, k]])) for k, w in enumerate(owned)])
        return results
