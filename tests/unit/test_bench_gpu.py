"""``python -m bench.run --device cuda``: refused in one line where torch sees no GPU (and with
``--bf16``), and the choices it makes for each side. No benchmark runs here, and nothing needs a
GPU; the GPU figures themselves are still missing (docs/speed.md, "On a GPU")."""

import argparse
import os

import pytest
import torch

from bench import gpu, run


def test_device_cuda_without_a_gpu_is_one_line_and_exit_2(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    measured = []
    monkeypatch.setattr(run.common, "measure_matmul_peak", lambda **kw: measured.append(kw) or 1.0)
    with pytest.raises(SystemExit) as exc:
        run.main(["--device", "cuda", "--out", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bench.run: --device cuda: no CUDA device is visible")
    assert not measured and not list(tmp_path.iterdir())   # refused before anything ran or was written


def test_device_cuda_with_bf16_is_refused(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(SystemExit) as exc:
        run.main(["--device", "cuda", "--bf16", "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "--bf16 is for a CPU" in capsys.readouterr().err


def test_what_each_side_is_given():
    cuda, cpu = argparse.Namespace(device="cuda"), argparse.Namespace(device="cpu")
    assert gpu.taskbert_precision(cuda, "taskbert") == "auto"
    assert gpu.taskbert_precision(cpu, "taskbert") == "fp32"
    assert gpu.taskbert_precision(cpu, "taskbert_bf16") == "bf16"
    # on a CPU the workers do not see a GPU (taskbert would take one), on CUDA they do
    assert gpu.device_env("cpu") == {"CUDA_VISIBLE_DEVICES": ""}
    assert gpu.device_env("cuda") == {}


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU-only answers")
def test_without_cuda_the_gpu_helpers_do_nothing():
    assert gpu.peak_gpu_mb() is None
    gpu.device_sync()   # no GPU, no wait, no error


def test_meters_read_the_device_only_at_the_timed_edges():
    import torch

    from bench import gpu

    assert gpu.timed_edges(5, 100) == {5, 100} and gpu.timed_edges(0, 20) == {20}
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    raw = gpu.row_record(mask)
    assert torch.is_tensor(raw[1])                      # kept on the device, not read yet
    assert gpu.token_records([raw]) == [(2, 4, 8, 10, 32)]   # 3 + 1 real; 9 + 1; 2 * 4²


def test_a_shaped_model_is_made_once_with_the_given_tokenizer(tiny_encoder, tmp_path):
    from transformers import AutoConfig, AutoTokenizer

    from bench.shapes import SHAPES, shaped_model

    sizes = {"hidden_size": 48, "num_hidden_layers": 3, "num_attention_heads": 4, "intermediate_size": 96}
    folder = shaped_model("tiny", tiny_encoder, str(tmp_path), sizes=sizes)
    cfg = AutoConfig.from_pretrained(folder)
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size) == (48, 3, 96)
    assert cfg.vocab_size == len(AutoTokenizer.from_pretrained(tiny_encoder))
    assert AutoTokenizer.from_pretrained(folder).get_vocab() == AutoTokenizer.from_pretrained(tiny_encoder).get_vocab()
    mtime = os.path.getmtime(os.path.join(folder, "config.json"))
    assert shaped_model("tiny", tiny_encoder, str(tmp_path), sizes=sizes) == folder   # reused
    assert os.path.getmtime(os.path.join(folder, "config.json")) == mtime
    assert SHAPES["base"]["hidden_size"] == 768 and SHAPES["large"]["num_hidden_layers"] == 24
