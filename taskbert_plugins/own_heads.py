"""Task heads in an architecture's own layout, so that ``best/`` loads in ``AutoModelFor*``.

BERT and ALBERT name their heads the way the built-in heads do (a dropout and a linear layer
over the pooled ``[CLS]`` vector or every token). Other architectures have heads of their own:
RoBERTa's ``classifier.dense`` + ``classifier.out_proj`` on ``<s>``, DistilBERT's
``pre_classifier``, DeBERTa's context pooler, ModernBERT's prediction head and its mean pooling.
A plain-transformers reload of a BERT-style head on such a model would build the
architecture's own head instead, randomly initialised, and predict something else.

:class:`OwnHead` builds the architecture's own ``AutoModelFor<kind>`` from the encoder's
config, keeps its head modules (every child but the base model) under their own names, and
runs that model's own ``forward`` with the base model replaced by a stand-in that hands back
the encoder output the core computed (passed as ``inputs_embeds``). The logits are computed
by transformers' code for that architecture, so ``AutoModelFor*.from_pretrained(best/)``
finds every key and predicts the same; the task's head adds the loss.
"""

import copy

from torch import nn

from taskbert import Head

#: head kind -> the transformers auto class whose layout ``best/`` takes
AUTO_CLASSES = {"sequence": "AutoModelForSequenceClassification",
                "token": "AutoModelForTokenClassification",
                "qa": "AutoModelForQuestionAnswering",
                "mlm": "AutoModelForMaskedLM"}
#: architectures whose own heads are the built-in BERT-style ones (nothing to adopt)
BERT_LAYOUT = ("bert", "albert")
#: config keys a head's dropout may be read from, per architecture; ``task_options.dropout``
#: sets them all on the head's own copy of the config (the encoder's is left alone)
DROPOUT_KEYS = ("classifier_dropout", "seq_classif_dropout", "cls_dropout", "qa_dropout",
                "hidden_dropout_prob", "dropout")
#: architectures whose own sequence head reads the first token alone (a fast path may then
#: compute that position only); ModernBERT reads every token when it pools by the mean
FIRST_TOKEN = ("roberta", "xlm-roberta", "camembert", "electra", "distilbert", "deberta",
               "deberta-v2", "mpnet")


def wants_own_head(config, kind):
    """True when ``config``'s architecture has a ``*For<kind>*`` head of a layout of its own."""
    import transformers

    if getattr(config, "model_type", None) in (("bert",) if kind == "mlm" else BERT_LAYOUT):
        return False   # BERT's own (ALBERT's masked-LM head projects to its embedding size)
    auto = getattr(transformers, AUTO_CLASSES[kind])
    return type(config) in auto._model_mapping


def head_layout(task, config, kind):
    """``"own"`` (the architecture's own ``*For*`` layout), ``"bert"`` (the BERT-style head) or
    ``"legacy"`` (the BERT-style head with the encoder's pooler kept, as runs saved before own
    layouts existed have it). A new run decides from the encoder's architecture; a saved one
    keeps what its ``taskbert.json`` task state says (``head_layout``, absent = legacy). The
    answer is kept on the task for its state."""
    layout = getattr(task, "head_layout", None)
    if layout is None:
        layout = "own" if wants_own_head(config, kind) else "bert"
    task.head_layout = layout
    return layout


def drop_pooler(encoder):
    """Drop the encoder's pooler for a head that reads none (token and span heads, and the
    own heads whose ``*For*`` model builds its base without one): it is then neither computed,
    trained nor saved, so ``best/`` holds no key the ``*For*`` model would call unexpected."""
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None


class _GivenHidden(nn.Module):
    """Stands in for the base model inside a ``*For*`` model: returns the hidden states it
    is given as ``inputs_embeds`` as that model's output."""

    def forward(self, *args, inputs_embeds=None, **kwargs):
        from transformers.modeling_outputs import BaseModelOutput

        return BaseModelOutput(last_hidden_state=inputs_embeds)


def _for_model(config, kind, num_labels, dropout):
    import transformers

    cfg = copy.deepcopy(config)
    if num_labels is not None:
        cfg.num_labels = num_labels
    if dropout is not None:
        for key in DROPOUT_KEYS:
            if hasattr(cfg, key):
                setattr(cfg, key, dropout)
    cfg.num_hidden_layers = 1   # the base model is replaced at once: build it small
    # ... and its attention never runs: eager, so encoder.attn_implementation: flash_attention_2
    # (copied in cfg) is not checked again for a throwaway layer
    return getattr(transformers, AUTO_CLASSES[kind]).from_config(cfg, attn_implementation="eager")


class OwnHead(Head):
    """The head modules of the encoder's architecture's ``AutoModelFor<kind>``, run by that
    model's own forward on the encoder's last hidden state; subclasses add the loss.

    ``architecture`` is the ``*For*`` class name for ``best/config.json``. When that model's
    base has no pooler, the encoder's pooler is dropped (it is neither read nor saved).
    """

    kind = "sequence"

    def __init__(self, encoder, num_labels=None, dropout=None):
        super().__init__()
        model = _for_model(encoder.config, self.kind, num_labels, dropout)
        prefix = model.base_model_prefix
        if getattr(getattr(model, prefix), "pooler", None) is None:
            drop_pooler(encoder)
        setattr(model, prefix, _GivenHidden())
        for name, child in model.named_children():
            if name != prefix:
                self.add_module(name, child)
        object.__setattr__(self, "_model", model)   # not a child: its modules are ours already
        self.architecture = type(model).__name__
        self.model_type = encoder.config.model_type

    def read_positions(self, batch, training):
        first = self.model_type in FIRST_TOKEN or getattr(self._model.config, "classifier_pooling", "") == "cls"
        return "first" if self.kind == "sequence" and first else None

    def own_output(self, encoder_out, batch):
        """The ``*For*`` model's output (``logits``, or ``start_logits``/``end_logits``)."""
        hidden = encoder_out.last_hidden_state
        mask = batch["attention_mask"][:, :hidden.size(1)]   # a first-token pass keeps one column
        return self._model(inputs_embeds=hidden, attention_mask=mask, return_dict=True)
