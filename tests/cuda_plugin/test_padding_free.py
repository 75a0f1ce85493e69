"""The padding-free pass of ``taskbert_cuda`` computes what the padded encoder does, on every
architecture it packs; the others run padded. On a CPU, with transformers' packed-sequence
mask (``sdpa``) or ``taskbert_varlen`` over a plain per-row kernel in place of torch's CUDA one."""

import pytest
import torch
from transformers import AutoConfig, AutoModel

from taskbert.task import whole_encoder
from taskbert_cuda import packing, varlen

SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 48,
             "vocab_size": 60, "max_position_embeddings": 48, "pad_token_id": 1}
EXTRA = {"electra": {"embedding_size": 32}, "albert": {"embedding_size": 16},
         "distilbert": {"dim": 32, "n_layers": 2, "n_heads": 4, "hidden_dim": 48}}


def _model(name, attn="sdpa", **config):
    torch.manual_seed(0)
    cfg = AutoConfig.for_model(name, **{**SMALL, **EXTRA.get(name, {}), **config})
    return AutoModel.from_config(cfg, attn_implementation=attn).eval()


def _batch(types=True):
    torch.manual_seed(5)
    lengths = [9, 4, 12, 1]
    ids = torch.randint(3, 60, (4, 12))
    mask = (torch.arange(12)[None] < torch.tensor(lengths)[:, None]).long()
    ids[mask == 0] = 1                                         # the pad id
    batch = {"input_ids": ids, "attention_mask": mask, "row_lengths": lengths}
    if types:
        batch["token_type_ids"] = (torch.arange(12)[None] >= 3).long() * mask
    return batch


def test_layout_by_hand():
    lay = packing.layout([2, 3, 1], width=4)
    assert lay.index.tolist() == [0, 1, 4, 5, 6, 8]
    assert lay.positions.tolist() == [[0, 1, 0, 1, 2, 0]]
    assert lay.cu_seqlens.tolist() == [0, 2, 5, 6] and lay.cu_seqlens.dtype == torch.int32
    assert lay.max_length == 3
    assert packing.layout([2, 3, 1], 4, offset=2).positions.tolist() == [[2, 3, 2, 3, 4, 2]]


def test_roberta_positions_start_after_the_pad_id():
    assert packing.position_offset(_model("roberta").config) == 2      # pad 1: positions 2, 3, ...
    assert packing.position_offset(_model("bert").config) == 0


def test_lengths_come_from_the_mask_when_the_batch_has_none():
    batch = _batch()
    assert packing.batch_lengths(batch) == [9, 4, 12, 1]
    del batch["row_lengths"]
    assert packing.batch_lengths(batch) == [9, 4, 12, 1]
    batch["attention_mask"] = batch["attention_mask"].flip(1)          # left padding: not packed
    assert packing.batch_lengths(batch) is None


@pytest.mark.parametrize("name", sorted(packing.PACKABLE))
def test_packed_equals_padded(name):
    model = _model(name)
    batch = _batch(types=name != "roberta")   # RoBERTa's single token type: none given
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        ref = whole_encoder(model, batch)
        out = packing.packed_call(model, batch, batch["row_lengths"])
    assert torch.allclose(out.last_hidden_state[real], ref.last_hidden_state[real], atol=1e-5)
    assert not out.last_hidden_state[~real].any()                      # zeros at the pads
    if getattr(ref, "pooler_output", None) is None:   # ELECTRA has no pooler
        assert out.pooler_output is None
    else:
        assert torch.allclose(out.pooler_output, ref.pooler_output, atol=1e-5)


def test_gradients_equal_the_padded_ones():
    grads = []
    for pack in (False, True):
        model = _model("bert")
        batch = _batch()
        real = batch["attention_mask"].bool()
        out = packing.packed_call(model, batch, batch["row_lengths"]) if pack else whole_encoder(model, batch)
        (out.last_hidden_state[real].pow(2).sum() + out.pooler_output.sum()).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert torch.allclose(grads[0], grads[1], atol=1e-4)


def test_varlen_attention_packed_and_padded(cpu_varlen):
    """fp32: the attention alone on the padded layout (no kernel call), exactly; bf16: the
    kernel, once a layer."""
    model = _model("roberta")
    ref_model = _model("roberta")
    assert varlen.use_varlen_attention(model) == 1
    assert model.config._attn_implementation == "taskbert_varlen"
    batch = _batch(types=False)
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        ref = whole_encoder(ref_model, batch).last_hidden_state
        padded = whole_encoder(model, batch).last_hidden_state    # no cu_seq_lens: SDPA, SDPA's mask
        packed = packing.packed_call(model, batch, batch["row_lengths"]).last_hidden_state
        assert not cpu_varlen                                     # fp32: varlen.repadded
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = packing.packed_call(model, batch, batch["row_lengths"]).last_hidden_state
            half_ref = whole_encoder(ref_model, batch).last_hidden_state
        assert len(cpu_varlen) == SMALL["num_hidden_layers"]
    assert torch.allclose(padded, ref, atol=1e-6)
    assert torch.allclose(packed[real], ref[real], atol=1e-5)
    assert (half[real].float() - half_ref[real].float()).abs().max() < 0.1   # bf16 on both sides


def test_attention_dropout_in_training_equals_the_padded_pass(cpu_varlen):
    """Training with attention dropout (the kernel has none): SDPA on the padded layout draws
    the padded pass's dropout masks from the same seed, so outputs and gradients match."""
    outs, grads = [], []
    for pack in (False, True):
        model = _model("bert", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.3).train()
        if pack:
            varlen.use_varlen_attention(model)
        batch = _batch()
        real = batch["attention_mask"].bool()
        torch.manual_seed(7)
        out = packing.packed_call(model, batch, batch["row_lengths"]) if pack else whole_encoder(model, batch)
        out.last_hidden_state[real].pow(2).sum().backward()
        outs.append(out.last_hidden_state[real].detach())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert not cpu_varlen
    assert torch.allclose(outs[0], outs[1], atol=1e-5)
    assert torch.allclose(grads[0], grads[1], atol=1e-4)
    assert not torch.allclose(outs[0], _eval_outputs(), atol=1e-3)   # the dropout did act


def _eval_outputs():
    model = _model("bert", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.3)
    batch = _batch()
    with torch.no_grad():
        return whole_encoder(model, batch).last_hidden_state[batch["attention_mask"].bool()]


def test_which_attention_packs_in_which_precision():
    model = _model("bert")
    varlen.use_varlen_attention(model)
    batch = _batch()
    assert packing.can_pack(model, batch, forced=False)                        # fp32: repadded
    assert packing.can_pack(model.train(), batch, forced=False)                # attention dropout: too
    flash = _model("bert")
    flash.config._attn_implementation = "flash_attention_2"   # the flash-attn kernels take fp16/bf16 only
    assert not packing.can_pack(flash, batch, forced=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert packing.can_pack(flash, batch, forced=False)
    plain = _model("bert")                                                     # sdpa: only when forced
    assert not packing.can_pack(plain, batch, forced=False) and packing.can_pack(plain, batch, forced=True)


def test_the_pass_packs_under_bf16_and_falls_back_elsewhere(cpu_varlen):
    model, ref_model = _model("bert"), _model("bert")
    varlen.use_varlen_attention(model)
    seen = []
    npass = packing.padding_free_pass(lambda e, b, p: seen.append(1) or whole_encoder(e, b))
    batch = _batch()
    real = batch["attention_mask"].bool()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = npass(model, batch, None).last_hidden_state
        ref = whole_encoder(ref_model, batch).last_hidden_state
        assert not seen and cpu_varlen
        full = {k: (v[2:3, :] if torch.is_tensor(v) else v[2:3]) for k, v in batch.items()}
        npass(model, full, None)                                 # no padding: the pass it wraps
        assert seen == [1]
    assert (out[real].float() - ref[real].float()).abs().max() < 0.1   # bf16 on both sides


@pytest.mark.parametrize("name", ["distilbert", "albert"])
def test_other_architectures_run_padded(name):
    model = _model(name)
    assert not packing.can_pack(model, _batch(types=False), forced=True)
