"""ELECTRA (embedding size = hidden size, so the CPU plugin's partial last layer admits it)
with its own classification head, which reads ``<s>`` only: the fast path engages, and its
predictions equal the whole encoder's and the run's own."""

import json
import os

from taskbert.testing import TINY_WORDS, make_tiny_encoder, run_spec, tiny_classification_spec, write_polarity_data
from tests.cpu_plugin.test_roberta_e2e import _predict, assert_labels_agree


def test_electra_own_head_on_the_fast_path_agrees_with_the_whole_encoder(tmp_path):
    from taskbert.cli.runs import load_run, predict_examples, read_inputs

    encoder = make_tiny_encoder(str(tmp_path / "enc"), TINY_WORDS, model_type="electra", embedding_size=32)
    dev = write_polarity_data(tmp_path / "dev.jsonl", 40, 2)
    spec = tiny_classification_spec(encoder, write_polarity_data(tmp_path / "train.jsonl", 200, 1), dev,
                                    tmp_path / "run", epochs=2, precision="fp32")
    _, run_dir = run_spec(spec, str(tmp_path))
    with open(os.path.join(run_dir, "predictions.jsonl"), encoding="utf-8") as fh:
        own = [p for p in map(json.loads, fh) if p["split"] == "validation"]
    loaded = load_run(run_dir)
    assert loaded.task.hf_architecture == "ElectraForSequenceClassification"
    examples = read_inputs(dev, loaded.task)
    fast = predict_examples(loaded, examples, batch_size=8)
    assert loaded.model.encoder._taskbert_first_token is True   # the partial last layer ran
    assert_labels_agree(own, fast, _predict(run_dir, examples, whole=True), 40)
