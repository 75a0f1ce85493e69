"""taskbert_cuda: padding-free encoder passes on a GPU, as a plugin of its own.

Like ``taskbert_cpu`` it changes how a model computes, never what it computes (each pass is
checked against the padded one in ``tests/cuda_plugin/``). It is one of the default plugins;
``TASKBERT_DISABLE_PLUGINS=taskbert_cuda`` runs taskbert without it.

One hook, ``taskbert_prepare_model``, which on a CUDA device:

* switches an encoder that uses ``sdpa`` to ``taskbert_varlen`` (:mod:`.varlen`: torch's own
  variable-length FlashAttention for packed calls in fp16/bf16 without attention dropout, SDPA
  on the padded layout for the other packed calls, SDPA for padded batches);
* sets ``model.encoder_pass`` to the padding-free pass (:mod:`.packing`): every batch of an
  architecture it knows runs packed, its real tokens in one row, with ``taskbert_varlen``
  attention (any precision; the kernel where it can serve) or, under fp16/bf16 autocast,
  ``flash_attention_2``/``3`` (the ``flash-attn`` package). Other batches run as before.

``TASKBERT_PADDING_FREE`` chooses: ``auto`` (the default: as above, on CUDA only), ``off``
(never), ``on`` (pack on any device, with ``sdpa``/``eager`` attention too, which then keep
the rows apart with transformers' packed-sequence mask: exact but no faster; for checks).
"""

import os

from taskbert import SpecError, hookimpl

VARIABLE = "TASKBERT_PADDING_FREE"
CHOICES = ("auto", "on", "off")


def setting():
    """The value of ``TASKBERT_PADDING_FREE`` (``auto`` when unset), checked."""
    value = os.environ.get(VARIABLE, "auto").strip() or "auto"
    if value not in CHOICES:
        raise SpecError(f"{VARIABLE}={value!r} is not one of {', '.join(CHOICES)}")
    return value


@hookimpl
def taskbert_check_spec(spec):
    setting()   # a misspelt TASKBERT_PADDING_FREE is refused before weights load


@hookimpl
def taskbert_prepare_model(model, device, phase):
    value = setting()
    if value == "off" or (value == "auto" and device.type != "cuda"):
        return
    from .packing import padding_free_pass
    from .varlen import use_varlen_attention

    if device.type == "cuda":
        use_varlen_attention(model.encoder)
    if not getattr(model.encoder_pass, "taskbert_padding_free", False):
        model.encoder_pass = padding_free_pass(model.encoder_pass, forced=value == "on")
