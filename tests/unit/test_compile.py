"""``train.compile``: the spec key, the one-line refusal where torch.compile cannot run, and a
tiny run under torch.compile that follows the same loss curve as the plain one.

The run uses the ``aot_eager`` backend (``compiling.BACKEND``): TorchDynamo's graph capture and
AOTAutograd's forward/backward tracing as with Inductor, without Inductor's C++ code generation,
which takes minutes on a 2-core CPU. Inductor itself is not run by the suite."""

import json
import os

import pytest
import torch
from click.testing import CliRunner

from taskbert.cli import cli
from taskbert.config.spec import load_spec
from taskbert.testing import run_spec, tiny_classification_spec, write_spec
from taskbert.train import compiling


def _losses(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as fh:
        return [r["train/loss"] for r in map(json.loads, fh) if "train/loss" in r]


def test_the_key_defaults_off_and_is_a_bool(tmp_path, sentiment_data):
    base = {"task": "sentence_classification", "data": {"train": sentiment_data[0]}}
    assert load_spec(write_spec(base, str(tmp_path))).train.compile is False
    bad = write_spec({**base, "train": {"compile": "yes"}}, str(tmp_path), "bad.yaml")
    with pytest.raises(Exception, match="train.compile"):
        load_spec(bad)


def test_compile_model_wraps_only_when_asked(monkeypatch):
    seen = []
    monkeypatch.setattr(torch, "compile", lambda model, **kw: seen.append(kw) or ("compiled", model))
    model = torch.nn.Linear(2, 2)
    assert compiling.compile_model(model, False) is model
    assert compiling.compile_model(model, True) == ("compiled", model)
    assert seen == [{"backend": "inductor", "dynamic": None}]


def test_refused_in_one_line_where_torch_compile_cannot_run(tmp_path, tiny_encoder, sentiment_data, monkeypatch):
    import torch._dynamo

    spec = {"task": "sentence_classification", "encoder": {"model": tiny_encoder},
            "data": {"train": sentiment_data[0]}, "train": {"compile": True}}
    path = write_spec(spec, str(tmp_path))
    monkeypatch.setattr(torch._dynamo, "is_dynamo_supported", lambda: False)
    result = CliRunner().invoke(cli, ["validate", path])
    assert result.exit_code == 2, result.output
    assert "train.compile: true, but torch.compile (TorchDynamo) is not supported" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    monkeypatch.undo()
    import torch._inductor.cpp_builder as builder

    def no_compiler():
        raise RuntimeError("no C++ compiler found")
    monkeypatch.setattr(builder, "get_cpp_compiler", no_compiler)
    result = CliRunner().invoke(cli, ["validate", path])
    assert result.exit_code == 2 and "needs a C++ compiler" in result.stderr, result.output
    assert compiling.compile_unavailable(torch.device("meta")) is None


def test_a_compiled_run_follows_the_plain_loss_curve(tmp_path, tiny_encoder, sentiment_data, monkeypatch):
    monkeypatch.setattr(compiling, "BACKEND", "aot_eager")
    train, dev = sentiment_data
    from torch._dynamo.utils import counters

    counters.clear()
    curves = {}
    for on in (False, True):
        spec = tiny_classification_spec(tiny_encoder, train, dev, tmp_path / f"run-{on}", epochs=1,
                                        precision="fp32", compile=on)
        metrics, run_dir = run_spec(spec, str(tmp_path), name=f"spec-{on}.yaml")
        curves[on] = _losses(run_dir)
    assert counters["stats"]["unique_graphs"] > 0   # the compiled run did go through TorchDynamo
    assert len(curves[True]) == len(curves[False]) >= 4
    assert curves[True][-1] < curves[True][0]   # it trained
    for a, b in zip(curves[True], curves[False]):
        assert abs(a - b) < 1e-3 * max(1.0, abs(b)), (curves[True], curves[False])
