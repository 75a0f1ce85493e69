"""taskbert_cpu.lastlayer: the last layer run only at the positions a task reads."""

import pytest
import torch
from torch import nn
from transformers import BertConfig, BertModel

from taskbert_cpu import lastlayer as ll


def _tiny_bert(seed=0):
    torch.manual_seed(seed)
    cfg = BertConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                     intermediate_size=48, vocab_size=60, max_position_embeddings=40)
    return BertModel(cfg).eval()


def _batch():
    torch.manual_seed(7)
    ids = torch.randint(1, 60, (4, 9))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    mask[3, 2:] = 0
    needed = torch.zeros_like(ids, dtype=torch.bool)
    needed[0, [1, 2, 5, 8]] = True     # rows ask for different numbers of positions
    needed[1, [3]] = True
    needed[2, [0, 4, 6]] = True        # row 3 asks for none
    return ids, mask, needed


def test_positions_pass_matches_the_full_encoder_outputs_and_gradients():
    ids, mask, needed = _batch()
    full_model, fast_model = _tiny_bert(), _tiny_bert()
    full = full_model(input_ids=ids, attention_mask=mask).last_hidden_state
    fast = ll.encode_positions(fast_model, ids, mask, needed).last_hidden_state
    assert fast_model._taskbert_positions is True
    assert fast.shape == full.shape == (4, 9, 32)
    assert torch.allclose(full[needed], fast[needed], atol=1e-5)
    assert torch.count_nonzero(fast[~needed]) == 0   # nothing computed where nothing is read
    # a loss on the asked-for positions gives every parameter the same gradient
    weights = torch.randn(int(needed.sum()), 32)
    (full[needed] * weights).sum().backward()
    (fast[needed] * weights).sum().backward()
    for (name, a), b in zip(full_model.named_parameters(), fast_model.parameters()):
        ga = a.grad if a.grad is not None else torch.zeros_like(a)
        gb = b.grad if b.grad is not None else torch.zeros_like(b)
        assert torch.allclose(ga, gb, atol=1e-5), name


def test_positions_pass_with_nothing_asked_for_and_without_padding():
    model = _tiny_bert()
    ids, mask, needed = _batch()
    out = ll.encode_positions(model, ids, mask, torch.zeros_like(needed))
    assert torch.count_nonzero(out.last_hidden_state) == 0
    ones = torch.ones_like(mask)          # no padding: transformers builds no mask at all
    full = model(input_ids=ids, attention_mask=ones).last_hidden_state
    fast = ll.encode_positions(model, ids, ones, needed).last_hidden_state
    assert torch.allclose(full[needed], fast[needed], atol=1e-5)


def test_padding_positions_are_never_computed():
    model = _tiny_bert()
    ids, mask, _ = _batch()
    out = ll.encode_positions(model, ids, mask, torch.ones_like(mask))
    assert torch.count_nonzero(out.last_hidden_state[mask == 0]) == 0


@pytest.mark.parametrize("path, attribute", [("first", "_taskbert_first_token"),
                                             ("positions", "_taskbert_positions")])
def test_both_passes_fall_back_for_other_encoders(path, attribute):
    calls = []

    class Other(nn.Module):
        config = BertConfig()

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            calls.append(input_ids.shape)
            return {"last_hidden_state": torch.ones(*input_ids.shape, 4)}

    enc = Other()
    ids, mask, needed = _batch()
    out = (ll.encode_first_token(enc, ids, mask) if path == "first"
           else ll.encode_positions(enc, ids, mask, needed))
    assert out["last_hidden_state"].shape == (4, 9, 4) and calls == [(4, 9)]
    assert getattr(enc, attribute) is False


def test_tagger_trains_on_the_same_loss_and_gradients_as_the_full_encoder(tiny_encoder):
    """The token-classification task through its own forward: the labelled-position pass
    gives the loss and gradients the full encoder gives (dropout off, so both are exact)."""
    from taskbert.task import TaskModel
    from taskbert_cpu import partial_pass
    from taskbert_plugins.tagging import TokenClassification
    from taskbert.data.batching import collate

    encoder_path = tiny_encoder
    from taskbert.encoder import load_model, load_tokenizer
    task = TokenClassification()
    examples = [{"tokens": ["alpha", "beta", "gamma"], "tags": ["O", "B-x", "I-x"], "where": "a"},
                {"tokens": ["delta", "epsilon"], "tags": ["B-x", "O"], "where": "b"},
                {"tokens": ["zeta"], "tags": ["O"], "where": "c"}]
    task.setup({"train": examples})
    tokenizer = load_tokenizer(encoder_path)
    rows = task.encode_all(examples, tokenizer, 16)
    batch = collate(rows, tokenizer.pad_token_id or 0, task.pad_fields)
    losses, grads = [], []
    for fast in (False, True):
        torch.manual_seed(0)
        encoder = load_model(encoder_path)
        model = TaskModel(encoder, task.build_head(encoder))
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0
        model.train()
        if fast:   # the CPU plugin's pass; the model's own is the whole encoder
            model.encoder_pass = partial_pass(model.encoder_pass)
        loss = model(batch)["loss"]
        loss.backward()
        losses.append(loss.item())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        assert getattr(encoder, "_taskbert_positions", False) is fast
    assert abs(losses[0] - losses[1]) < 1e-5
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-5), name


def test_stack_rounded_up_for_onednn_shapes_keeps_outputs_and_gradients(monkeypatch):
    """With the stack rounded to a multiple (bf16 on a CPU), the extra padding positions change
    nothing at the positions read, in the forward pass or in any parameter's gradient."""
    ids, mask, needed = _batch()
    pack = ll._Packing(mask, 8)
    assert pack.rows.numel() % 8 == 0 and pack.rows.numel() > int(mask.sum())
    assert bool(mask.bool()[pack.rows, pack.cols].sum() == mask.sum())   # every real token is in
    monkeypatch.setattr(ll, "shape_multiple", lambda device: 8)
    for encode in ("positions", "first"):
        full_model, fast_model = _tiny_bert(), _tiny_bert()
        full = full_model(input_ids=ids, attention_mask=mask)
        if encode == "positions":
            fast = ll.encode_positions(fast_model, ids, mask, needed).last_hidden_state[needed]
            want = full.last_hidden_state[needed]
        else:
            fast = ll.encode_first_token(fast_model, ids, mask).last_hidden_state[:, 0]
            want = full.last_hidden_state[:, 0]
        assert torch.allclose(want, fast, atol=1e-5), encode
        weights = torch.randn_like(want)
        (want * weights).sum().backward()
        (fast * weights).sum().backward()
        for (name, a), b in zip(full_model.named_parameters(), fast_model.parameters()):
            ga = a.grad if a.grad is not None else torch.zeros_like(a)
            gb = b.grad if b.grad is not None else torch.zeros_like(b)
            assert torch.allclose(ga, gb, atol=1e-5), (encode, name)


def test_shape_multiple_only_under_cpu_low_precision_autocast():
    cpu = torch.device("cpu")
    assert ll.shape_multiple(cpu) == 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert ll.shape_multiple(cpu) == 64
    assert ll.shape_multiple(torch.device("meta")) == 1


def test_columns_rounded_to_eight_but_never_past_the_positions():
    cfg = BertConfig(max_position_embeddings=12)
    ids, mask = torch.ones(2, 9, dtype=torch.long), torch.ones(2, 9, dtype=torch.long)
    got_ids, got_mask, none = ll._round_columns(cfg, 64, ids, mask, None)
    assert got_ids.shape == got_mask.shape == (2, 9)        # 16 would pass 12 positions
    cfg.max_position_embeddings = 40
    got_ids, got_mask, none = ll._round_columns(cfg, 64, ids, mask, None)
    assert got_ids.shape == (2, 16) and none is None
    assert got_mask[:, 9:].sum() == 0 and got_mask[:, :9].all()   # the new columns are padding
    assert ll._round_columns(cfg, 1, ids, mask) == (ids, mask)     # fp32: untouched


def test_query_key_value_run_as_one_product_unless_a_layer_has_hooks(monkeypatch):
    ids, mask, needed = _batch()
    model = _tiny_bert()
    want = model(input_ids=ids, attention_mask=mask).last_hidden_state[needed]
    ll.encode_positions(model, ids, mask, needed)   # the first call also checks the path once
    shapes = []
    linear = torch.nn.functional.linear

    def counting(x, weight, bias=None):
        shapes.append(tuple(weight.shape))
        return linear(x, weight, bias)

    monkeypatch.setattr(torch.nn.functional, "linear", counting)
    got = ll.encode_positions(model, ids, mask, needed).last_hidden_state[needed]
    assert torch.allclose(want, got, atol=1e-5)
    # two layers below the last: (query, key, value) stacked; the last layer: (key, value)
    assert shapes.count((96, 32)) == 2 and shapes.count((64, 32)) == 1
    seen = []
    model.encoder.layer[0].attention.self.query.register_forward_hook(lambda m, a, out: seen.append(out.shape))
    shapes.clear()
    got = ll.encode_positions(model, ids, mask, needed).last_hidden_state[needed]
    assert torch.allclose(want, got, atol=1e-5)
    assert seen == [(int(mask.sum()), 32)]          # the hooked layer ran on its own
    assert shapes.count((96, 32)) == 1


@pytest.mark.parametrize("kind", ["global forward", "global pre", "own backward"])
def test_projections_run_one_by_one_under_global_or_backward_hooks(monkeypatch, kind):
    ids, mask, needed = _batch()
    model = _tiny_bert()
    want = model(input_ids=ids, attention_mask=mask).last_hidden_state[needed]
    ll.encode_positions(model, ids, mask, needed)
    seen = []
    query = model.encoder.layer[0].attention.self.query
    if kind == "global forward":
        handle = torch.nn.modules.module.register_module_forward_hook(lambda m, a, out: seen.append(m))
    elif kind == "global pre":
        handle = torch.nn.modules.module.register_module_forward_pre_hook(lambda m, a: seen.append(m))
    else:
        handle = query.register_full_backward_hook(lambda m, gin, gout: seen.append(m))
    try:
        got = ll.encode_positions(model, ids, mask, needed).last_hidden_state
        if kind == "own backward":
            got.sum().backward()
    finally:
        handle.remove()
    assert torch.allclose(want, got[needed], atol=1e-5)
    assert query in seen                      # the query projection ran as its own module
    if kind != "own backward":
        for layer in model.encoder.layer[:-1]:
            assert layer.attention.self.key in seen and layer.attention.self.value in seen


@pytest.mark.parametrize("where", ["layer", "attention", "self-attention", "encoder"])
@pytest.mark.parametrize("path", ["first", "positions"])
def test_a_hook_the_paths_would_pass_by_makes_the_encoder_run_whole(where, path):
    ids, mask, needed = _batch()
    model = _tiny_bert()
    layer = model.encoder.layer[1]
    module = {"layer": layer, "attention": layer.attention, "self-attention": layer.attention.self,
              "encoder": model}[where]
    run = (lambda: ll.encode_first_token(model, ids, mask)) if path == "first" \
        else (lambda: ll.encode_positions(model, ids, mask, needed))
    run()
    calls = []
    handle = module.register_forward_hook(lambda m, a, out: calls.append(1))
    try:
        out = run().last_hidden_state
    finally:
        handle.remove()
    assert calls == [1]
    full = model(input_ids=ids, attention_mask=mask).last_hidden_state
    if path == "first":
        assert out.shape == full.shape        # the whole encoder's output, every position
    else:
        assert torch.allclose(out[needed], full[needed], atol=1e-5)
    run()
    assert calls == [1]                       # hook removed: the fast path again, no call
