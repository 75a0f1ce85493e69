"""The partial last-layer paths on every encoder architecture: exactly the stock model's
outputs, whatever the first batch looks like (positions included), or the whole encoder."""

import pytest
import torch
from transformers import AutoConfig, AutoModel

from taskbert_cpu import lastlayer as ll

SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
             vocab_size=60, max_position_embeddings=48, pad_token_id=1)
ARCHITECTURES = {
    # model_type: (extra config, whether the fast paths take it)
    "bert": ({}, True),
    "roberta": ({}, True),
    "xlm-roberta": ({}, True),
    "camembert": ({}, True),
    "electra": ({"embedding_size": 32}, True),
    "electra-projected": ({"embedding_size": 16}, False),   # embeddings_project: runs whole
    "albert": ({"embedding_size": 16}, False),
    "distilbert": ({"dim": 32, "n_layers": 2, "n_heads": 4, "hidden_dim": 48}, False),
    "deberta-v2": ({}, False),
    "mpnet": ({}, False),
    "modernbert": ({"global_attn_every_n_layers": 1, "local_attention": 8}, False),
}


def _model(name):
    extra, _ = ARCHITECTURES[name]
    torch.manual_seed(0)
    config = AutoConfig.for_model(name.replace("-projected", ""), **{**SMALL, **extra})
    return AutoModel.from_config(config).eval()


def _batches():
    torch.manual_seed(5)
    dense = torch.randint(3, 60, (3, 10))                 # a first batch without padding
    ids = torch.randint(3, 60, (4, 12))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[3, 3:] = 0
    ids[mask == 0] = 1                                    # the pad id
    return (dense, torch.ones_like(dense)), (ids, mask)


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_fast_paths_equal_the_stock_model_on_padded_batches(name):
    """The bug this guards: RoBERTa-style positions (from padding_idx + 1) were rebuilt from 0
    on packed batches, and a check on an unpadded first batch could not see it."""
    model = _model(name)
    (dense_ids, dense_mask), (ids, mask) = _batches()
    needed = mask.bool().clone()
    needed[0, [2, 5]] = False
    with torch.no_grad():
        # the first call (which decides whether a path is used) sees a batch without padding
        ll.encode_positions(model, dense_ids, dense_mask, dense_mask.bool())
        ll.encode_first_token(model, dense_ids, dense_mask)
        full = model(input_ids=ids, attention_mask=mask).last_hidden_state
        positions = ll.encode_positions(model, ids, mask, needed).last_hidden_state
        first = ll.encode_first_token(model, ids, mask).last_hidden_state
    taken = ARCHITECTURES[name][1]
    assert model._taskbert_positions is taken and model._taskbert_first_token is taken
    torch.testing.assert_close(positions[needed], full[needed], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(first[:, 0], full[:, 0], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["roberta", "bert"])
def test_rounded_columns_keep_roberta_positions(name, monkeypatch):
    """Under CPU bf16 the columns are rounded up with pad ids, not id 0 (which RoBERTa would
    count as a real token and give a position)."""
    monkeypatch.setattr(ll, "shape_multiple", lambda device: 8)
    model = _model(name)
    _, (ids, mask) = _batches()
    ids, mask = ids[:, :11], mask[:, :11]
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask).last_hidden_state
        got = ll.encode_positions(model, ids, mask, mask.bool()).last_hidden_state
    assert model._taskbert_positions is True
    torch.testing.assert_close(got[mask.bool()], full[mask.bool()], atol=1e-5, rtol=1e-4)


def test_the_check_batch_always_holds_padding():
    model = _model("bert")
    ids = torch.randint(3, 60, (2, 6))
    check_ids, check_mask, _ = ll._check_batch(model, ids, torch.ones_like(ids), None)
    assert check_mask.shape == (3, 6) and check_mask[2].tolist() == [1, 1, 1, 0, 0, 0]
    assert check_ids[2, 3:].tolist() == [1, 1, 1]


def test_a_path_that_differs_only_on_padded_rows_is_refused(monkeypatch):
    """A path that is right without padding and wrong with it fails the check even when the
    first batch has no padding (the old check compared two rows of the first batch)."""
    model = _model("bert")
    real = ll._below_last

    def wrong_with_padding(encoder, layers, config, input_ids, attention_mask, *rest):
        hidden, pack, mask = real(encoder, layers, config, input_ids, attention_mask, *rest)
        return (hidden if pack.dense else hidden + 1), pack, mask

    monkeypatch.setattr(ll, "_below_last", wrong_with_padding)
    (dense_ids, dense_mask), _ = _batches()
    ll.encode_positions(model, dense_ids, dense_mask, dense_mask.bool())
    ll.encode_first_token(model, dense_ids, dense_mask)
    assert model._taskbert_positions is False and model._taskbert_first_token is False


def test_roberta_max_length_counts_the_position_offset():
    config = AutoConfig.for_model("roberta", max_position_embeddings=514, pad_token_id=1)
    assert ll._positions(config) == 512
    assert ll._positions(AutoConfig.for_model("bert", max_position_embeddings=512)) == 512
