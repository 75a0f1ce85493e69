"""taskbert_cpu: speed for training and prediction on a CPU, as a plugin of its own.

Everything here changes how a model computes on a CPU, never what it computes (each shortcut
is checked against the plain computation in ``tests/cpu_plugin/``). It is one of the default
plugins; ``TASKBERT_DISABLE_PLUGINS=taskbert_cpu`` runs taskbert without it (then the stock
encoder, torch's dropout and glibc's malloc defaults run). It never acts on another device.

One hook, ``taskbert_prepare_model``:

* ``phase="train"``: hashed dropout masks (:mod:`.dropout`: the same Bernoulli masks drawn on
  every core, with a C kernel from :mod:`.native` where a compiler is at hand), glibc's
  malloc kept from unmapping freed blocks (:mod:`.memory`), and the partial last layer below;
* both phases: ``model.encoder_pass`` runs the last layer only at the positions the task's
  :meth:`~taskbert.Head.read_positions` names, on the real tokens only (:mod:`.lastlayer`;
  an encoder it does not fit runs whole);
* ``phase="predict"``: linear weights packed once for oneDNN (:mod:`.packed`).

``TASKBERT_DROPOUT_MASKS`` chooses the dropout masks: ``auto`` (the default: hashed on a
CPU), ``hash`` (hashed on any device), ``torch`` (torch's own). ``TASKBERT_NATIVE=0`` keeps
the hashed masks but skips the C kernel (the torch version makes the same masks).
"""

import os

from taskbert import SpecError, hookimpl

DROPOUT_VARIABLE = "TASKBERT_DROPOUT_MASKS"
DROPOUT_CHOICES = ("auto", "hash", "torch")


def dropout_setting():
    """The value of ``TASKBERT_DROPOUT_MASKS`` (``auto`` when unset), checked."""
    value = os.environ.get(DROPOUT_VARIABLE, "auto").strip() or "auto"
    if value not in DROPOUT_CHOICES:
        raise SpecError(f"{DROPOUT_VARIABLE}={value!r} is not one of {', '.join(DROPOUT_CHOICES)}")
    return value


def partial_pass(previous):
    """An encoder pass that computes the last layer at the positions read only, falling back
    to ``previous`` when every position is read."""
    def encoder_pass(encoder, batch, positions):
        from .lastlayer import encode_first_token, encode_positions

        ids, mask, types = batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")
        if positions is None:
            return previous(encoder, batch, positions)
        if isinstance(positions, str):
            if positions != "first":
                raise ValueError(f"read_positions returned {positions!r}; expected None, 'first' or a mask")
            return encode_first_token(encoder, ids, mask, types)
        return encode_positions(encoder, ids, mask, positions, types)
    encoder_pass.taskbert_cpu = True
    return encoder_pass


@hookimpl
def taskbert_check_spec(spec):
    dropout_setting()   # a misspelt TASKBERT_DROPOUT_MASKS is refused before weights load


@hookimpl
def taskbert_prepare_model(model, device, phase):
    setting = dropout_setting()
    if phase == "train" and (setting == "hash" or (setting == "auto" and device.type == "cpu")):
        from .dropout import use_hash_dropout

        use_hash_dropout(model)
    if device.type != "cpu":
        return
    if not getattr(model.encoder_pass, "taskbert_cpu", False):
        model.encoder_pass = partial_pass(model.encoder_pass)
    if phase == "train":
        from .memory import keep_freed_memory

        keep_freed_memory()
    elif phase == "predict":
        from .packed import pack_linear_weights

        pack_linear_weights(model)
