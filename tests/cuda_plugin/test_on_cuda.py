"""On a real GPU only (skipped elsewhere): torch's variable-length kernel under
``taskbert_varlen`` equals the plain per-row computation, and the packed pass equals the padded
one in bf16, for a BERT and a RoBERTa. CI has no GPU; these run where one is lent."""

import pytest
import torch
from transformers import AutoConfig, AutoModel

from taskbert.task import whole_encoder
from taskbert_cuda import packing, varlen

pytestmark = pytest.mark.skipif(not torch.cuda.is_available() or varlen.kernel is None,
                                reason="needs a CUDA device and torch's varlen_attn")


def test_the_kernel_equals_per_row_attention():
    torch.manual_seed(0)
    q, k, v = (torch.randn(23, 4, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    cu = torch.tensor([0, 5, 17, 23], dtype=torch.int32, device="cuda")
    got = varlen.kernel(q, k, v, cu, cu, 12, 12, scale=0.125)
    want = varlen.per_row_attention(q.float(), k.float(), v.float(), cu, cu, 12, 12, scale=0.125)
    assert (got.float() - want).abs().max() < 2e-2


@pytest.mark.parametrize("half", [True, False])
@pytest.mark.parametrize("name", ["bert", "roberta"])
def test_packed_equals_padded(name, half):
    """bf16: torch's kernel; fp32: the attention on the padded layout (varlen.repadded)."""
    torch.manual_seed(0)
    cfg = AutoConfig.for_model(name, hidden_size=256, num_hidden_layers=2, num_attention_heads=4,
                               intermediate_size=512, vocab_size=100, max_position_embeddings=80, pad_token_id=1)
    model = AutoModel.from_config(cfg, attn_implementation="sdpa").cuda().eval()
    ref = AutoModel.from_config(cfg, attn_implementation="sdpa").cuda().eval()
    ref.load_state_dict(model.state_dict())
    assert varlen.use_varlen_attention(model) == 1
    lengths = [40, 7, 64, 1, 33]
    ids = torch.randint(3, 100, (5, 64), device="cuda")
    mask = (torch.arange(64, device="cuda")[None] < torch.tensor(lengths, device="cuda")[:, None]).long()
    ids[mask == 0] = 1
    batch = {"input_ids": ids, "attention_mask": mask, "row_lengths": lengths}
    npass = packing.padding_free_pass(whole_encoder)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=half):
        assert packing.can_pack(model, batch, forced=False)
        got = npass(model, batch, None).last_hidden_state.float()
        want = whole_encoder(ref, batch).last_hidden_state.float()
    real = mask.bool()
    assert (got[real] - want[real]).abs().max() < (5e-2 if half else 1e-4)   # bf16 on both sides, or fp32
    assert not got[~real].any()
