"""taskbert_cpu.dropout: hashed dropout masks and the first-token encoder pass."""

import sys

import pytest
import torch
from torch import nn
from transformers import BertConfig, BertModel

from taskbert_cpu import dropout as fp
from taskbert_cpu.lastlayer import encode_first_token
from taskbert_cpu.memory import keep_freed_memory


def _lowbias32(x):
    x &= 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    x ^= x >> 16
    return x


def _reference_mask(n, p, keys):
    """keep_mask written out in plain Python integers (no wrapping tensor arithmetic)."""
    threshold = round(p * 2**16) - 2**15
    out = []
    for i in range((n + 1) // 2):
        x = _lowbias32(i + keys[0]) ^ keys[1]
        x = (x * 0x7FEB352D) & 0xFFFFFFFF
        halves = (x & 0xFFFF, x >> 16) if sys.byteorder == "little" else (x >> 16, x & 0xFFFF)
        out += [(h - 65536 if h >= 32768 else h) >= threshold for h in halves]
    return out[:n]


def test_keep_mask_matches_the_hash_written_by_hand():
    keys = [123456789, 2024]
    mask = fp.keep_mask((7, 11), 0.3, keys=keys)
    assert mask.shape == (7, 11) and mask.dtype == torch.bool
    assert mask.flatten().tolist() == _reference_mask(77, 0.3, keys)


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_keep_mask_rate_and_independence(p):
    torch.manual_seed(0)
    a = fp.keep_mask((400, 500), p).float()
    b = fp.keep_mask((400, 500), p).float()
    n = a.numel()
    tol = 5 * (p * (1 - p) / n) ** 0.5
    assert abs(a.mean().item() - (1 - p)) < tol
    assert abs(b.mean().item() - (1 - p)) < tol
    assert not torch.equal(a, b)
    # neither neighbours within a call nor the same position across calls are correlated
    for x, y in ((a.flatten()[:-1], a.flatten()[1:]), (a.flatten(), b.flatten())):
        corr = torch.corrcoef(torch.stack([x, y]))[0, 1].item()
        assert abs(corr) < 0.02


def test_keep_mask_follows_torch_seed():
    torch.manual_seed(5)
    a = fp.keep_mask((64, 33), 0.1)
    torch.manual_seed(5)
    assert torch.equal(a, fp.keep_mask((64, 33), 0.1))


def test_hash_dropout_scales_and_backpropagates_through_the_mask():
    torch.manual_seed(1)
    x = torch.ones(200, 300, requires_grad=True)
    y = fp.hash_dropout(x, 0.2)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.8) < 0.01
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.8))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # d(sum)/dx = mask / (1 - p)
    layer = fp.HashDropout(0.2).eval()
    assert layer(x) is x
    assert fp.hash_dropout(x, 0.0) is x


def _tiny_bert(seed=0):
    torch.manual_seed(seed)
    cfg = BertConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                     intermediate_size=48, vocab_size=60, max_position_embeddings=40)
    return BertModel(cfg)


def _batch():
    ids = torch.randint(1, 60, (4, 9))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    mask[3, 2:] = 0
    types = torch.zeros_like(ids)
    types[:, 4:] = 1
    return ids, mask, types


def test_use_hash_dropout_keeps_eval_outputs_weights_and_saved_config(tmp_path):
    model = _tiny_bert().eval()
    ids, mask, types = _batch()
    before = model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
    keys = set(model.state_dict())
    swapped, attention = fp.use_hash_dropout(model)
    assert swapped == 1 + 3 * 3 and attention == 1   # embeddings, 3 per layer (one holds attention p)
    assert not any(type(m) is nn.Dropout for m in model.modules())
    after = model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
    assert torch.equal(before, after)
    assert set(model.state_dict()) == keys
    model.save_pretrained(tmp_path)
    assert fp.ATTENTION_NAME not in (tmp_path / "config.json").read_text()
    # training: masks drawn, fixed by the seed
    model.train()
    torch.manual_seed(3)
    a = model(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.manual_seed(3)
    b = model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.equal(a, b) and not torch.allclose(a, after)


def test_hashed_attention_dropout_matches_sdpa_when_nothing_is_dropped():
    model = _tiny_bert()
    ids, mask, _ = _batch()
    model.train()
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    ref = model(input_ids=ids, attention_mask=mask).last_hidden_state
    fp.use_hash_dropout(model)
    for layer in model.encoder.layer:        # only the attention dropout draws (p tiny)
        layer.attention.self.dropout.p = 1e-9
    out = model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.allclose(ref, out, atol=1e-5)


def test_first_token_pass_matches_the_full_encoder_outputs_and_gradients():
    ids, mask, types = _batch()
    full_model, fast_model = _tiny_bert(), _tiny_bert()
    for model in (full_model, fast_model):
        model.eval()
    full = full_model(input_ids=ids, attention_mask=mask, token_type_ids=types)
    fast = encode_first_token(fast_model, ids, mask, types)
    assert fast_model._taskbert_first_token is True
    assert fast.last_hidden_state.shape == (4, 1, 32)
    assert torch.allclose(full.last_hidden_state[:, :1], fast.last_hidden_state, atol=1e-5)
    assert torch.allclose(full.pooler_output, fast.pooler_output, atol=1e-5)
    full.pooler_output.pow(2).sum().backward()
    fast.pooler_output.pow(2).sum().backward()
    for (name, a), b in zip(full_model.named_parameters(), fast_model.parameters()):
        ga = a.grad if a.grad is not None else torch.zeros_like(a)
        gb = b.grad if b.grad is not None else torch.zeros_like(b)
        assert torch.allclose(ga, gb, atol=1e-5), name


def test_first_token_pass_is_kept_under_autocast():
    model = _tiny_bert().train()
    ids, mask, types = _batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = encode_first_token(model, ids, mask, types)
    assert model._taskbert_first_token is True and out.last_hidden_state.shape == (4, 1, 32)
    assert model.training   # the one-time check restores the mode


def test_keep_freed_memory_respects_the_users_malloc_settings(monkeypatch):
    calls = []

    class FakeLibc:
        def mallopt(self, param, value):
            calls.append((param, value))
            return 1

    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr("ctypes.CDLL", lambda name: FakeLibc())
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    assert keep_freed_memory() is True
    assert calls == [(-3, 256 << 20), (-1, 512 << 20)]
    calls.clear()
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "33554432")
    assert keep_freed_memory() is False and calls == []
