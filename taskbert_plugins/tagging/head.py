"""The token-classification head: a softmax over tags at every token it reads."""

import torch
from torch import nn

from taskbert import Head
from taskbert_plugins.own_heads import OwnHead


class TokenClassificationHead(Head):
    """Dropout and a linear layer on the tokens of the encoder's last layer; cross-entropy
    on ``batch["labels"]`` (-100: not trained on). ``word_pooling`` is the task's: with
    ``first``, a prediction reads each word's first subtoken only."""

    def __init__(self, hidden_size, num_labels, dropout, word_pooling="first"):
        super().__init__()
        self.word_pooling = word_pooling
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)

    def read_positions(self, batch, training):
        """(batch, seq) bool: the tokens whose logits are read. Training reads the labelled
        ones; evaluation and prediction also those that make each owned word's prediction.
        None for a batch without labels or word slots (every position is then computed)."""
        if "labels" not in batch or "word_slot" not in batch:
            return None
        needed = batch["labels"] != -100                  # (batch, seq)
        if training:
            return needed
        firsts = batch.get("first_positions")
        if self.word_pooling != "first" or firsts is None:
            return needed | (batch["word_slot"] >= 0)
        rows = [r for r, pos in enumerate(firsts) for _ in pos]
        cols = [p for pos in firsts for p in pos]
        needed = needed.clone()
        needed[torch.tensor(rows, dtype=torch.long), torch.tensor(cols, dtype=torch.long)] = True
        return needed

    def forward(self, encoder_out, batch):
        hidden = encoder_out.last_hidden_state                 # (batch, seq, hidden)
        logits = self.classifier(self.dropout(hidden))          # (batch, seq, labels)
        out = {"logits": logits}
        if "labels" in batch:
            out["loss"] = tag_loss(logits, batch["labels"])
        return out


class OwnTokenClassificationHead(OwnHead):
    """The architecture's own token-classification head (see :mod:`taskbert_plugins.own_heads`):
    its logits at every token, read and trained as :class:`TokenClassificationHead`'s are."""

    kind = "token"

    def __init__(self, encoder, num_labels, dropout=None, word_pooling="first"):
        super().__init__(encoder, num_labels, dropout)
        self.word_pooling = word_pooling

    read_positions = TokenClassificationHead.read_positions

    def forward(self, encoder_out, batch):
        logits = self.own_output(encoder_out, batch).logits    # (batch, seq, labels)
        out = {"logits": logits}
        if "labels" in batch:
            out["loss"] = tag_loss(logits, batch["labels"])
        return out


def tag_loss(logits, labels):
    """Mean cross-entropy over the tokens (or words) whose label is not -100: logits
    ``(batch, n, labels)``, labels ``(batch, n)``. With nothing to learn: zero in training,
    NaN in evaluation (so the mean loss skips the batch)."""
    if not bool((labels != -100).any()):
        return logits.sum() * 0.0 if torch.is_grad_enabled() else torch.tensor(float("nan"))
    return nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)).float(),
                                       labels.reshape(-1), ignore_index=-100)
