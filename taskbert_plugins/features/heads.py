"""Layer choices, subtoken pooling and the light heads of feature-based use.

The paper's second way of using BERT (section 5.3, Table 7): keep the encoder frozen, take
the hidden states of chosen layers as features and train a small model on them. Here a
feature is a tensor ``(units, layers, hidden)`` per feature row: a unit is a sentence (one
pooled vector) or a word (its subtokens pooled), ``layers`` are the encoder's hidden states
that the layer choice reads. The cache stores exactly that; the combination of the layers
(sum, concat, a learned scalar mix) happens in the head, so the scalar mix trains with it.

Hidden-state indices follow transformers' ``output_hidden_states``: 0 is the embedding
output, ``num_layers`` the last layer.
"""

import torch
from torch import nn

from taskbert import Head, SpecError
from taskbert_plugins.tagging.head import tag_loss

#: the layer choices of ``task_options.layers`` (the rows of the paper's Table 7, plus two)
LAYER_CHOICES = ("embeddings", "last", "second_to_last", "sum_last_four", "concat_last_four",
                 "mean_all", "scalar_mix")


def layer_indices(choice, num_layers, where="task_options.layers"):
    """The hidden-state indices (0 = embeddings, ``num_layers`` = last) that ``choice`` reads."""
    needs = {"second_to_last": 2, "sum_last_four": 4, "concat_last_four": 4}.get(choice, 1)
    if choice not in LAYER_CHOICES:
        raise SpecError(f"{where}: {choice!r} is not a layer choice; use one of: {', '.join(LAYER_CHOICES)}")
    if num_layers < needs:
        raise SpecError(f"{where}: {choice!r} needs an encoder with at least {needs} layers; this one "
                        f"has {num_layers}; use last, mean_all or scalar_mix")
    last = num_layers
    return {
        "embeddings": [0],
        "last": [last],
        "second_to_last": [last - 1],
        "sum_last_four": list(range(last - 3, last + 1)),
        "concat_last_four": list(range(last - 3, last + 1)),
        "mean_all": list(range(last + 1)),
        "scalar_mix": list(range(last + 1)),
    }[choice]


def feature_size(choice, hidden):
    """Width of the combined feature vector for a layer choice."""
    return 4 * hidden if choice == "concat_last_four" else hidden


class LayerCombiner(nn.Module):
    """Combine the cached layers ``(..., layers, hidden)`` into one vector ``(..., size)``.

    ``scalar_mix`` is ELMo's: ``gamma * sum_j softmax(w)_j * h_j`` with ``w`` and ``gamma``
    trained with the head (``w`` starts at 0, so at first it is the mean of all layers).
    ``concat_last_four`` concatenates in layer order (fourth-to-last first, last last).
    """

    def __init__(self, choice, num_layers):
        super().__init__()
        self.choice = choice
        if choice == "scalar_mix":
            self.weights = nn.Parameter(torch.zeros(num_layers))
            self.gamma = nn.Parameter(torch.ones(()))

    def forward(self, x):   # (..., layers, hidden) -> (..., size)
        if self.choice in ("embeddings", "last", "second_to_last"):
            return x[..., 0, :]
        if self.choice == "sum_last_four":
            return x.sum(-2)
        if self.choice == "concat_last_four":
            return x.flatten(-2)
        if self.choice == "mean_all":
            return x.mean(-2)
        mix = torch.softmax(self.weights, dim=0).to(x.dtype)   # (layers,)
        return self.gamma * (x * mix.unsqueeze(-1)).sum(-2)

    def layer_weights(self):
        """The normalised scalar-mix weights (None for other choices), for reports."""
        if self.choice != "scalar_mix":
            return None
        return torch.softmax(self.weights.detach(), dim=0).tolist()


def pool_units(hidden, spans, mode):
    """Pool positions into units: ``hidden`` (seq, layers, dim), ``spans`` (units, 2) of
    [start, end) positions, ``mode`` first | last | mean -> (units, layers, dim)."""
    starts, ends = spans[:, 0], spans[:, 1]
    if mode == "first":
        return hidden[starts]
    if mode == "last":
        return hidden[ends - 1]
    pos = torch.arange(hidden.shape[0], device=hidden.device)
    weights = ((pos >= starts[:, None]) & (pos < ends[:, None])).to(hidden.dtype)   # (units, seq)
    weights = weights / weights.sum(1, keepdim=True)
    return torch.einsum("us,sld->uld", weights, hidden)


@torch.no_grad()   # not inference_mode: a head in training may take these tensors
def extract_batch(encoder, batch, layer_ids, pooling):
    """Run the frozen encoder once on a collated batch; return one tensor
    ``(units, len(layer_ids), hidden)`` per row, pooled over each row's ``unit_spans``.

    The encoder runs in eval mode (no dropout), so the features do not depend on whether
    the model around it is training.
    """
    was_training = encoder.training
    stack = getattr(getattr(encoder, "encoder", None), "layer", None)   # BERT-shaped encoders
    top = max(layer_ids)
    cut = isinstance(stack, nn.ModuleList) and min(layer_ids) >= 0 and top < len(stack)
    encoder.eval()
    try:
        if cut:  # layers above the highest one asked for do not run (hidden_states[i] is layer i's
            # output; the embeddings are recorded as the first layer's input, so one layer stays)
            encoder.encoder.layer = stack[:max(top, 1)]
        out = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                      token_type_ids=batch.get("token_type_ids"), output_hidden_states=True)
    finally:
        if cut:
            encoder.encoder.layer = stack
        encoder.train(was_training)
    hidden = torch.stack([out.hidden_states[i] for i in layer_ids], dim=2)   # (batch, seq, layers, dim)
    result = []
    for i, spans in enumerate(batch["unit_spans"]):
        spans = torch.as_tensor(spans, dtype=torch.long, device=hidden.device).reshape(-1, 2)
        result.append(pool_units(hidden[i], spans, pooling))
    return result


def pad_units(features, device=None):
    """Stack per-row ``(units, layers, dim)`` tensors into ``(batch, max_units, layers, dim)``
    float32 and a ``(batch, max_units)`` bool mask of real units."""
    device = device or features[0].device
    lengths = torch.tensor([f.shape[0] for f in features], device=device)
    padded = nn.utils.rnn.pad_sequence([f.to(device, torch.float32) for f in features], batch_first=True)
    mask = torch.arange(padded.shape[1], device=device)[None, :] < lengths[:, None]
    return padded, mask


class FeatureHead(Head):
    """Base of the feature heads: they read frozen-encoder features, not the encoder's usual
    output. ``run_encoder`` gives the batch's cached ``features`` or, for rows without them
    (prediction), extracts the same features on the fly; ``forward`` pads them per unit and
    hands ``(features (batch, units, layers, dim), mask (batch, units))`` to :meth:`logits`.
    ``layer_ids`` and ``pooling`` are set by the task when it builds the head."""

    layer_ids = None
    pooling = "first"

    def run_encoder(self, encoder, batch):
        features = batch.get("features")
        if features is None:   # not cached (prediction): the same extraction, on the fly
            features = extract_batch(encoder, batch, self.layer_ids, self.pooling)
        return features

    def forward(self, features, batch):
        x, mask = pad_units(features, batch["input_ids"].device)   # (batch, units, layers, hidden)
        out = self.logits(x, mask)
        loss = self.loss(out["logits"], batch)
        if loss is not None:
            out["loss"] = loss
        return out

    def logits(self, features, mask):
        raise NotImplementedError

    def loss(self, logits, batch):
        """The loss when ``batch`` holds the labels, else None."""
        raise NotImplementedError


class SentenceFeatureHead(FeatureHead):
    """Layer combination, dropout, then a linear layer or a small MLP (one hidden layer)."""

    def __init__(self, choice, num_cached, hidden, num_labels, kind="linear", mlp_hidden=256, dropout=0.1):
        super().__init__()
        self.combiner = LayerCombiner(choice, num_cached)
        size = feature_size(choice, hidden)
        self.dropout = nn.Dropout(dropout)
        if kind == "mlp":
            self.classifier = nn.Sequential(nn.Linear(size, mlp_hidden), nn.GELU(), nn.Dropout(dropout),
                                            nn.Linear(mlp_hidden, num_labels))
        else:
            self.classifier = nn.Linear(size, num_labels)

    def logits(self, features, mask):   # (batch, 1, layers, dim) -> logits (batch, labels)
        return {"logits": self.classifier(self.dropout(self.combiner(features[:, 0])))}

    def loss(self, logits, batch):
        if "label" not in batch:
            return None
        return nn.functional.cross_entropy(logits, batch["label"], ignore_index=-100)


class TagFeatureHead(FeatureHead):
    """Layer combination, dropout, an optional two-layer BiLSTM (as the paper used on
    CoNLL NER), then a linear layer per word."""

    def __init__(self, choice, num_cached, hidden, num_labels, kind="linear", lstm_hidden=256,
                 dropout=0.1, lstm_layers=2):
        super().__init__()
        self.combiner = LayerCombiner(choice, num_cached)
        size = feature_size(choice, hidden)
        self.dropout = nn.Dropout(dropout)
        self.lstm = None
        if kind == "bilstm":
            self.lstm = nn.LSTM(size, lstm_hidden, num_layers=lstm_layers, bidirectional=True,
                                batch_first=True, dropout=dropout if lstm_layers > 1 else 0.0)
            size = 2 * lstm_hidden
        self.classifier = nn.Linear(size, num_labels)

    def logits(self, features, mask):   # (batch, words, layers, dim) -> logits (batch, words, labels)
        x = self.dropout(self.combiner(features))   # (batch, words, size)
        if self.lstm is not None:
            lengths = mask.sum(1).clamp(min=1).cpu()
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            out, _ = self.lstm(packed)
            x, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
            x = self.dropout(x)
        return {"logits": self.classifier(x)}

    def loss(self, logits, batch):
        if "word_labels" not in batch:
            return None
        return tag_loss(logits, batch["word_labels"][:, :logits.shape[1]])   # (batch, words)
