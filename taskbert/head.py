"""The head base class: the model side of a task.

A head is an ``nn.Module`` in the ``BertFor*`` pattern: ``forward(encoder_output, batch)``
returns a dict of tensors, with ``"loss"`` (a scalar) when the batch carries the labels it
trains on. :class:`~taskbert.TaskModel` joins it to the encoder, so
``TaskModel(encoder, head)(batch)`` runs without the task object::

    batch (input_ids, attention_mask, token_type_ids, the task's fields)
      --TaskModel.encoder_pass(encoder, batch, head.read_positions(batch, training))--> encoder output
      --head(encoder_output, batch)--> {"logits": ..., "loss": ...}
"""

from typing import ClassVar, Optional

from torch import nn


class Head(nn.Module):
    """Base of every task head. Subclass it, build your layers in ``__init__`` and write
    ``forward(encoder_output, batch)``; override :meth:`read_positions` when the head reads
    only some positions, and :meth:`run_encoder` when it does not read the encoder's usual
    output (frozen features)."""

    #: encoder output fields a head needs besides ``last_hidden_state`` (documentation only)
    reads: ClassVar[Optional[str]] = None

    def read_positions(self, batch, training):
        """Which positions of the encoder's ``last_hidden_state`` :meth:`forward` reads in
        ``batch``: None (any of them), ``"first"`` (position 0 only: a [CLS] head), or a
        ``(batch, seq)`` bool tensor. It must read nothing else: an encoder pass (the CPU
        speed plugin's) may compute the last layer only there and leave zeros elsewhere, and
        ``pooler_output`` may then be None unless position 0 is read in every row."""
        return None

    #: ``run_encoder(encoder, batch) -> encoder output`` for a head that runs the encoder its
    #: own way (for instance from cached features); None: :class:`TaskModel`'s encoder pass
    run_encoder = None

    def forward(self, encoder_output, batch):
        """A dict of tensors, with ``"loss"`` when ``batch`` holds the labels."""
        raise NotImplementedError
