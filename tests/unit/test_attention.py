"""``encoder.attn_implementation``: what reaches ``from_pretrained``, that SDPA and eager
attention compute the same encoder, the one-line refusals before weights load, and that
``best/`` of a run with a chosen kernel reloads to the same predictions."""

import dataclasses
import importlib.util
import json
import os

import pytest
import torch
from click.testing import CliRunner

from taskbert import SpecError
from taskbert.cli import cli
from taskbert.config.spec import EncoderSpec, load_spec
from taskbert.encoder import PretrainedSource, attention_kwargs, load_model
from taskbert.testing import TINY_WORDS, make_tiny_encoder, run_spec, tiny_classification_spec, write_spec


@pytest.fixture(scope="module")
def tiny_roberta(tmp_path_factory):
    return make_tiny_encoder(str(tmp_path_factory.mktemp("tiny-roberta")), TINY_WORDS, model_type="roberta")


def _batch(model):
    """Two rows of different lengths: the second padded, so the masks matter."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, model.config.vocab_size, (2, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    ids[1, 7:] = model.config.pad_token_id or 0
    return ids, mask


def test_auto_passes_nothing_and_the_others_pass_through():
    assert attention_kwargs(EncoderSpec()) == {}
    assert attention_kwargs(None) == {}
    for impl in ("sdpa", "eager", "flash_attention_2"):
        assert attention_kwargs(EncoderSpec(attn_implementation=impl)) == {"attn_implementation": impl}


@pytest.mark.parametrize("which", ["bert", "roberta"])
def test_sdpa_and_eager_give_the_same_encoder_outputs(which, tiny_encoder, tiny_roberta):
    folder = tiny_encoder if which == "bert" else tiny_roberta
    models = {impl: load_model(folder, EncoderSpec(model=folder, attn_implementation=impl)).eval()
              for impl in ("auto", "sdpa", "eager")}
    # auto is transformers' default, which is SDPA for these architectures
    assert {k: m.config._attn_implementation for k, m in models.items()} == \
        {"auto": "sdpa", "sdpa": "sdpa", "eager": "eager"}
    ids, mask = _batch(models["eager"])
    with torch.inference_mode():
        out = {k: m(input_ids=ids, attention_mask=mask).last_hidden_state for k, m in models.items()}
    real = mask.bool()
    assert torch.allclose(out["sdpa"][real], out["eager"][real], atol=1e-5, rtol=0)
    assert torch.equal(out["auto"], out["sdpa"])


def test_auto_falls_back_to_eager_where_there_is_no_sdpa(tmp_path):
    folder = make_tiny_encoder(str(tmp_path / "deberta"), TINY_WORDS, model_type="deberta-v2")
    assert load_model(folder, EncoderSpec(model=folder)).config._attn_implementation == "eager"


def _validate(tmp_path, encoder, train):
    path = write_spec({"task": "sentence_classification", "encoder": encoder, "data": {"train": train}},
                      str(tmp_path))
    return CliRunner().invoke(cli, ["validate", path])


def test_a_bad_value_is_one_line(tmp_path, tiny_encoder, sentiment_data):
    result = _validate(tmp_path, {"model": tiny_encoder, "attn_implementation": "flash"}, sentiment_data[0])
    assert result.exit_code == 2, result.output
    assert "encoder.attn_implementation" in result.stderr and "sdpa" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_flash_attention_is_refused_without_the_package_or_cuda(tmp_path, tiny_encoder, sentiment_data,
                                                                 monkeypatch):
    weights_loaded = []
    monkeypatch.setattr("transformers.AutoModel.from_pretrained",
                        classmethod(lambda cls, *a, **k: weights_loaded.append(a)))
    spec = {"model": tiny_encoder, "attn_implementation": "flash_attention_2"}
    if importlib.util.find_spec("flash_attn") is None:
        result = _validate(tmp_path, spec, sentiment_data[0])
        assert result.exit_code == 2 and "needs the flash-attn package" in result.stderr, result.output
        assert len(result.stderr.strip().splitlines()) == 1
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "flash_attn" else real_find_spec(name, *a))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = _validate(tmp_path, spec, sentiment_data[0])
    assert result.exit_code == 2 and "runs on CUDA only" in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert not weights_loaded


def test_an_explicit_kernel_the_architecture_lacks_is_refused_before_weights(tmp_path, sentiment_data):
    folder = make_tiny_encoder(str(tmp_path / "deberta"), TINY_WORDS, model_type="deberta-v2")
    spec = load_spec(write_spec({"task": "sentence_classification",
                                 "encoder": {"model": folder, "attn_implementation": "sdpa"},
                                 "data": {"train": sentiment_data[0]}}, str(tmp_path)))
    with pytest.raises(SpecError, match=r"encoder.attn_implementation: DebertaV2Model has no 'sdpa'"):
        PretrainedSource(spec).check()
    fine = dataclasses.replace(spec, encoder=dataclasses.replace(spec.encoder, attn_implementation="eager"))
    PretrainedSource(fine).check()


def test_best_of_an_eager_run_reloads_to_the_same_predictions(tmp_path, tiny_encoder, sentiment_data):
    """Training and evaluation ran with eager attention; predict reloads best/ with the default
    (SDPA): the probabilities must match the run's own predictions."""
    train, dev = sentiment_data
    spec = tiny_classification_spec(tiny_encoder, train, dev, tmp_path / "run", epochs=1, precision="fp32")
    spec["encoder"]["attn_implementation"] = "eager"
    _, run_dir = run_spec(spec, str(tmp_path))
    with open(os.path.join(run_dir, "predictions.jsonl"), encoding="utf-8") as fh:
        theirs = [json.loads(line) for line in fh]
    result = CliRunner().invoke(cli, ["predict", run_dir, dev, "-o", str(tmp_path / "out.jsonl")])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "out.jsonl", encoding="utf-8") as fh:
        ours = [json.loads(line) for line in fh]
    assert len(ours) == len(theirs) == 100
    for a, b in zip(ours, theirs):
        assert a["label"] == b["label"]
        assert max(abs(a["probabilities"][k] - b["probabilities"][k]) for k in a["probabilities"]) < 1e-5


def test_auto_takes_flash_attention_where_it_is_at_hand(tmp_path, tiny_encoder, monkeypatch):
    """CUDA and flash-attn (faked here): auto asks for flash_attention_2, so the taskbert_cuda
    plugin packs training batches too; not in fp32, not when a kernel is named, not for an
    architecture without it (DeBERTa-v2)."""
    import taskbert.encoder as enc

    monkeypatch.setattr(enc, "flash_attention_at_hand", lambda: True)
    asked = []
    monkeypatch.setattr(enc, "load_model", lambda name, spec_encoder=None, attention=None: asked.append(attention))
    deberta = make_tiny_encoder(str(tmp_path / "deberta"), TINY_WORDS, model_type="deberta-v2")
    cases = [(tiny_encoder, {}, "flash_attention_2"), (tiny_encoder, {"precision": "fp32"}, None),
             (deberta, {}, None)]
    for folder, train, want in cases:
        spec = tiny_classification_spec(folder, "t.jsonl", "v.jsonl", str(tmp_path / "run"), **train)
        PretrainedSource(load_spec(write_spec(spec, str(tmp_path)))).load()
        assert asked[-1] == want, (folder, train)
    spec = tiny_classification_spec(tiny_encoder, "t.jsonl", "v.jsonl", str(tmp_path / "run"))
    spec["encoder"]["attn_implementation"] = "sdpa"
    PretrainedSource(load_spec(write_spec(spec, str(tmp_path)))).load()
    assert asked[-1] is None
    monkeypatch.setattr(enc, "flash_attention_at_hand", lambda: False)
    PretrainedSource(load_spec(write_spec(tiny_classification_spec(
        tiny_encoder, "t.jsonl", "v.jsonl", str(tmp_path / "run")), str(tmp_path)))).load()
    assert asked[-1] is None
