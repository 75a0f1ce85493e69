"""The pretraining heads: BERT's masked-LM and next-sentence heads, or another
architecture's own masked-LM head (so ``best/`` loads in ``AutoModelForMaskedLM``).

Both score only the masked positions: the decoder (hidden x vocabulary) costs as much as the
whole encoder when run on every position, and the chosen ~15% give the same loss.
"""

from torch import nn

from taskbert import Head
from taskbert_plugins.own_heads import OwnHead


def init_bert_weights(module, std):
    """BERT's initialisation: normal(0, std) weights, zero biases, unit LayerNorm."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class PretrainingHead(Head):
    """``cls``: BERT's pretraining heads, named as in ``BertForPreTraining`` (or
    ``BertForMaskedLM`` without NSP); the decoder shares the word-embedding matrix and its
    bias is ``cls.predictions.bias``."""

    def __init__(self, config, nsp, embeddings):
        from transformers.models.bert.modeling_bert import (
            BertOnlyMLMHead,
            BertPreTrainingHeads,
        )

        super().__init__()
        self.nsp = nsp
        self.cls = BertPreTrainingHeads(config) if nsp else BertOnlyMLMHead(config)
        init_bert_weights(self.cls, getattr(config, "initializer_range", 0.02))
        nn.init.zeros_(self.cls.predictions.bias)
        # tie after initialising: the decoder weight IS the embedding matrix (stored once)
        self.cls.predictions.decoder.weight = embeddings.weight
        self.cls.predictions.decoder.bias = self.cls.predictions.bias

    def read_positions(self, batch, training):
        return None   # the masked positions, and [CLS] for next-sentence prediction

    def forward(self, encoder_out, targets):
        """``targets`` is the batch made by :meth:`Pretraining.prepare_batch`."""
        hidden = encoder_out.last_hidden_state          # (batch, seq, hidden)
        labels = targets["mlm_labels"]                  # (batch, seq), -100 = not predicted
        picked = labels != -100
        nsp_logits = None
        if self.nsp:
            pooled = getattr(encoder_out, "pooler_output", None)
            nsp_logits = self.cls.seq_relationship(hidden[:, 0] if pooled is None else pooled)   # (batch, 2)
        return mlm_output(self.cls.predictions(hidden[picked]), labels, picked, targets, nsp_logits)


def mlm_output(logits, labels, picked, targets, nsp_logits=None):
    """The dict :meth:`Pretraining.collect` reads, with the loss: masked-LM cross-entropy on
    the chosen positions, plus next-sentence cross-entropy when ``nsp_logits`` is given."""
    out = {"mlm_logits": logits, "mlm_labels": labels[picked], "mlm_rows": picked.nonzero()[:, 0],
           "rows": labels.size(0)}
    if out["mlm_labels"].numel():
        loss = nn.functional.cross_entropy(logits.float(), out["mlm_labels"])
    else:
        loss = logits.sum() * 0.0
    if nsp_logits is not None:
        out["nsp_logits"], out["nsp_labels"] = nsp_logits, targets["nsp_label"]
        loss = loss + nn.functional.cross_entropy(nsp_logits.float(), targets["nsp_label"])
    out["loss"] = loss
    return out


class OwnMLMHead(OwnHead):
    """The architecture's own masked-LM head (RoBERTa's ``lm_head``, DistilBERT's
    ``vocab_projector``, ELECTRA's generator head, ModernBERT's ``head`` + ``decoder`` ...),
    its decoder tied to the encoder's word embeddings as the architecture ties them."""

    kind = "mlm"

    def __init__(self, encoder):
        super().__init__(encoder)
        decoder = self._model.get_output_embeddings()
        if decoder is not None and getattr(encoder.config, "tie_word_embeddings", True):
            decoder.weight = encoder.get_input_embeddings().weight

    def read_positions(self, batch, training):
        return None   # the masked positions

    def forward(self, encoder_out, targets):
        labels = targets["mlm_labels"]                  # (batch, seq), -100 = not predicted
        picked = labels != -100
        chosen = encoder_out.last_hidden_state[picked][None]          # (1, chosen, hidden)
        logits = self._model(inputs_embeds=chosen, attention_mask=picked.new_ones(chosen.shape[:2]).long(),
                             return_dict=True).logits[0]               # (chosen, vocab): position-wise heads
        return mlm_output(logits, labels, picked, targets)
