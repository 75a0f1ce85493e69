"""Shared fixtures: a tiny random encoder and a learnable synthetic sentiment set."""

import os

import pytest
import torch

# Tiny models run fastest on one thread, and two test processes on a 2-core machine
# would otherwise fight over the cores.
torch.set_num_threads(1)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from taskbert.testing import run_spec, tiny_classification_spec, write_polarity_data  # noqa: E402
from taskbert.testing import tiny_encoder  # noqa: E402,F401  (the session fixture plugins use too)


@pytest.fixture()
def sentiment_data(tmp_path):
    """(train, validation) jsonl files of the synthetic sentiment task."""
    return (write_polarity_data(tmp_path / "train.jsonl", 400, 1),
            write_polarity_data(tmp_path / "dev.jsonl", 100, 2))


@pytest.fixture()
def classification_spec(tiny_encoder, sentiment_data, tmp_path):
    """A spec dict that trains the tiny encoder on the synthetic sentiment set."""
    train, dev = sentiment_data
    return {
        "task": "sentence_classification",
        "encoder": {"model": tiny_encoder, "max_length": 32},
        "data": {"train": train, "validation": dev},
        "train": {"epochs": 4, "batch_size": 16, "lr": 1.0e-3, "log_every": 5, "seed": 3,
                  "loggers": []},
        "output": str(tmp_path / "run"),
    }


@pytest.fixture(scope="session")
def trained_run(tiny_encoder, tmp_path_factory):
    """The run folder of a tiny sentiment model that learned its task (shared by the export
    and serve tests; they only read it)."""
    folder = tmp_path_factory.mktemp("trained")
    train = write_polarity_data(folder / "train.jsonl", 400, 1)
    dev = write_polarity_data(folder / "dev.jsonl", 60, 2)
    metrics, run_dir = run_spec(tiny_classification_spec(tiny_encoder, train, dev, folder / "run", epochs=4),
                                str(folder))
    assert metrics["validation/accuracy"] > 0.8  # parity checks need a model that learned something
    return run_dir
