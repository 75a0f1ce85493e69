"""Dynamic masks come from torch's RNG, so a pretraining run that crashes and resumes
ends bit-identical to one that never stopped (weights, predictions, metrics)."""

import os

import pytest

from taskbert.run import execute
from taskbert.config.spec import spec_from_dict
from taskbert.testing import Crash, crash_at, make_tiny_encoder
from test_pretraining_e2e import read_jsonl
from test_pretraining_text import WORDS, documents, write_corpus


def make_spec(folder, encoder, corpus):
    return spec_from_dict({
        "task": "pretraining", "encoder": {"model": encoder, "max_length": 32},
        "data": {"train": corpus[0], "validation": corpus[1]},
        "task_options": {"masking": "dynamic", "whole_word_masking": True,
                         "cache_dir": os.path.join(os.path.dirname(corpus[0]), "cache")},
        "train": {"epochs": 2, "batch_size": 8, "lr": 3e-3, "seed": 5, "threads": 1, "log_every": 4,
                  "eval_every": 10, "save_every": 3, "loggers": []},
        "output": os.path.join(folder, "run")}, os.path.join(folder, "spec.yaml"))


def test_crash_then_resume_replays_the_dynamic_masks(tmp_path):
    encoder = make_tiny_encoder(str(tmp_path / "enc"), WORDS, hidden=16, layers=1, max_positions=32)
    corpus = (write_corpus(tmp_path / "train.txt", documents(40, 1)),
              write_corpus(tmp_path / "dev.txt", documents(8, 2)))
    reference = make_spec(str(tmp_path / "ref"), encoder, corpus)
    execute(reference)
    crashed = make_spec(str(tmp_path / "crash"), encoder, corpus)
    with crash_at(8), pytest.raises(Crash):
        execute(crashed)
    execute(crashed, resume=True)

    def clean(run):
        return [{k: v for k, v in m.items() if not k.endswith("_per_s")}
                for m in read_jsonl(os.path.join(run, "metrics.jsonl"))]

    want, got = clean(reference.output), clean(crashed.output)
    assert want[0]["step"] == 0 and len([m for m in want if "train/loss" in m]) >= 4
    assert got == want
    for name in ("best/model.safetensors", "predictions.jsonl"):
        with open(os.path.join(reference.output, name), "rb") as a, open(os.path.join(crashed.output, name), "rb") as b:
            assert a.read() == b.read(), name
