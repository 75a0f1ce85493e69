"""Shared fixtures: a tiny random encoder and a learnable synthetic sentiment set."""

import os

import pytest
import torch

# Tiny models run fastest on one thread, and two test processes on a 2-core machine
# would otherwise fight over the cores.
torch.set_num_threads(1)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from taskbert.testing import FILLER, write_polarity_data  # noqa: E402
from taskbert.testing import NEGATIVE as NEG  # noqa: E402
from taskbert.testing import POSITIVE as POS  # noqa: E402


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory):
    """A saved tiny BERT whose vocabulary covers the synthetic words."""
    from taskbert.testing import make_tiny_encoder

    folder = tmp_path_factory.mktemp("encoder")
    extra = "alice bob paris london went to in lives works at acme corp".split()
    return make_tiny_encoder(str(folder), POS + NEG + FILLER + extra)


def write_sentiment(path, n, seed):
    """Texts of filler words plus one polar word; the label follows the polar word."""
    return write_polarity_data(path, n, seed)


@pytest.fixture()
def sentiment_data(tmp_path):
    """(train, validation) jsonl files of the synthetic sentiment task."""
    return write_sentiment(tmp_path / "train.jsonl", 400, 1), write_sentiment(tmp_path / "dev.jsonl", 100, 2)


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
