"""End to end: a tiny BERT pretrains (held-out MLM loss falls), its best/ loads in plain
transformers, and a later fine-tuning spec starts from the adapted encoder."""

import json
import os

import pytest
import torch
from safetensors.torch import load_file

from taskbert.testing import make_tiny_encoder, run_spec
from test_pretraining_text import WORDS, documents, write_corpus


def read_jsonl(path):
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    return (write_corpus(folder / "train.txt", documents(150, 1)),
            write_corpus(folder / "dev.txt", documents(25, 2)), str(folder))


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    from taskbert.testing import FILLER
    from taskbert.testing import NEGATIVE as NEG
    from taskbert.testing import POSITIVE as POS

    # the sentiment words too, so the adapted encoder can be fine-tuned on them
    return make_tiny_encoder(str(tmp_path_factory.mktemp("enc")), WORDS + POS + NEG + FILLER, max_positions=64)


def spec_for(encoder, corpus, out, **options):
    train, dev, folder = corpus
    return {"task": "pretraining", "encoder": {"model": encoder, "max_length": 48},
            "data": {"train": train, "validation": dev},
            "task_options": {"cache_dir": os.path.join(folder, "cache"), **options},
            "train": {"epochs": 3, "batch_size": 16, "lr": 3.0e-3, "warmup": 0.1, "seed": 3,
                      "log_every": 5, "eval_every": 10, "loggers": []},
            "output": str(out)}


@pytest.fixture(scope="module")
def pretrained(encoder, corpus, tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    metrics, run_dir = run_spec(spec_for(encoder, corpus, folder / "run"), str(folder))
    return metrics, run_dir


def test_held_out_mlm_loss_falls(pretrained):
    metrics, run_dir = pretrained
    evals = [m for m in read_jsonl(os.path.join(run_dir, "metrics.jsonl"))
             if "validation/perplexity" in m and not m.get("final")]
    assert evals[0]["step"] == 0 and len(evals) >= 3      # evaluated before training too
    start, end = evals[0], metrics
    # perplexity = exp(mean held-out MLM loss): from about the vocabulary size to a few
    # dozen; each document draws from 6 topic words, so a model that learnt the
    # templates and topics beats 1-in-60 guessing by far
    assert end["validation/perplexity"] < 0.3 * start["validation/perplexity"], (start, end)
    assert end["validation/mlm_accuracy"] > 0.2 > start["validation/mlm_accuracy"]
    assert 0 <= end["validation/nsp_accuracy"] <= 1
    preds = read_jsonl(os.path.join(run_dir, "predictions.jsonl"))
    assert len(preds) == 25 and {"document", "masked_tokens", "mlm_accuracy", "nsp_correct"} <= set(preds[0])


def test_predict_scores_new_documents(pretrained, corpus, tmp_path):
    from click.testing import CliRunner

    from taskbert.cli import cli

    metrics, run_dir = pretrained
    out = tmp_path / "p.jsonl"
    result = CliRunner().invoke(cli, ["predict", run_dir, corpus[1], "-o", str(out)])
    assert result.exit_code == 0, result.output
    docs = read_jsonl(out)
    assert len(docs) == 25 and all(d["instances"] >= 1 for d in docs)
    # the same fixed masks as the final evaluation: the same accuracy
    accuracy = sum(d["mlm_correct"] for d in docs) / sum(d["masked_tokens"] for d in docs)
    assert accuracy == pytest.approx(metrics["validation/mlm_accuracy"], abs=1e-9)


def test_best_loads_as_bert_for_pretraining_with_the_same_outputs(pretrained):
    from transformers import AutoTokenizer, BertForPreTraining

    from taskbert.cli.runs import load_run

    _, run_dir = pretrained
    best = os.path.join(run_dir, "best")
    state = load_file(os.path.join(best, "model.safetensors"))
    assert "cls.predictions.decoder.weight" not in state          # tied: stored once
    assert {"cls.predictions.bias", "cls.predictions.transform.dense.weight",
            "cls.predictions.transform.LayerNorm.weight", "cls.seq_relationship.weight"} <= set(state)
    assert json.load(open(os.path.join(best, "config.json")))["architectures"] == ["BertForPreTraining"]
    hf = BertForPreTraining.from_pretrained(best).eval()
    assert hf.cls.predictions.decoder.weight.data_ptr() == hf.bert.embeddings.word_embeddings.weight.data_ptr()
    tok = AutoTokenizer.from_pretrained(best)
    enc = tok(["the cat and the dog are here."], ["a bread likes the cake."], return_tensors="pt")
    enc["input_ids"][0, 2] = tok.mask_token_id
    with torch.no_grad():
        ref = hf(**enc)
    ours = load_run(run_dir)
    labels = torch.full_like(enc["input_ids"], -100)
    labels[0, 2] = 0
    with torch.no_grad():
        out = ours.model.encoder(**enc)
        head = ours.model.head(out, {"mlm_labels": labels, "nsp_label": torch.tensor([0])})
    assert torch.allclose(head["mlm_logits"][0], ref.prediction_logits[0, 2], atol=1e-4)
    assert torch.allclose(head["nsp_logits"], ref.seq_relationship_logits, atol=1e-4)


def test_fine_tuning_spec_starts_from_the_adapted_encoder(pretrained, tmp_path):
    from taskbert.testing import write_polarity_data
    from transformers import AutoModel

    from taskbert.encoder import load_model

    _, run_dir = pretrained
    best = os.path.join(run_dir, "best")
    saved = load_file(os.path.join(best, "model.safetensors"))
    adapted = AutoModel.from_pretrained(best)
    for name, value in adapted.state_dict().items():
        assert torch.equal(value, saved["bert." + name]), name      # pooler included
    assert torch.equal(load_model(best).embeddings.word_embeddings.weight,
                       saved["bert.embeddings.word_embeddings.weight"])
    spec = {"task": "sentence_classification", "encoder": {"model": best, "max_length": 32},
            "data": {"train": write_polarity_data(tmp_path / "t.jsonl", 400, 1),
                     "validation": write_polarity_data(tmp_path / "d.jsonl", 80, 2)},
            "train": {"epochs": 5, "batch_size": 16, "lr": 1.0e-3, "seed": 3, "loggers": []},
            "output": str(tmp_path / "cls")}
    metrics, _ = run_spec(spec, str(tmp_path))
    assert metrics["validation/accuracy"] >= 0.8


def test_mlm_only_static_masks_load_as_bert_for_masked_lm(encoder, corpus, tmp_path):
    from transformers import BertForMaskedLM

    spec = spec_for(encoder, corpus, tmp_path / "run", nsp=False, masking="static", dupe_factor=2,
                    whole_word_masking=True)
    spec["train"].update(epochs=1, eval_every="epoch")
    metrics, run_dir = run_spec(spec, str(tmp_path))
    assert "validation/nsp_accuracy" not in metrics and metrics["validation/perplexity"] < 60
    best = os.path.join(run_dir, "best")
    assert json.load(open(os.path.join(best, "config.json")))["architectures"] == ["BertForMaskedLM"]
    assert not [k for k in load_file(os.path.join(best, "model.safetensors")) if "seq_relationship" in k]
    BertForMaskedLM.from_pretrained(best)


def test_from_scratch_trains_a_vocabulary_and_a_new_bert(corpus, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    spec = spec_for("scratch", corpus, tmp_path / "run",
                    scratch={"layers": 1, "hidden": 32, "heads": 2, "intermediate": 64,
                             "max_positions": 64, "vocab_size": 200, "min_frequency": 1, "dropout": 0.0})
    metrics, run_dir = run_spec(spec, str(tmp_path))
    evals = [m for m in read_jsonl(os.path.join(run_dir, "metrics.jsonl")) if "validation/perplexity" in m]
    assert evals[-1]["validation/perplexity"] < 0.3 * evals[0]["validation/perplexity"]
    best = os.path.join(run_dir, "best")
    tok = AutoTokenizer.from_pretrained(best)
    assert 60 < len(tok) <= 200 and tok.tokenize("the cat") == ["the", "cat"]
    model = AutoModel.from_pretrained(best)
    assert model.config.num_hidden_layers == 1 and model.config.vocab_size == len(tok)


def test_from_scratch_a_roberta_with_a_byte_level_bpe_vocabulary(corpus, tmp_path):
    """``scratch.architecture: roberta``: a byte-level BPE vocabulary learnt from the corpus and
    a RoBERTa (positions after the pad id, one token type) trained by masked LM alone; best/
    reloads in AutoModelForMaskedLM with no missing keys; with nsp it is one line."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from taskbert import SpecError
    from taskbert.config.spec import spec_from_dict

    scratch = {"architecture": "roberta", "layers": 1, "hidden": 32, "heads": 2, "intermediate": 64,
               "max_positions": 64, "vocab_size": 400, "min_frequency": 1, "dropout": 0.0}
    with pytest.raises(SpecError, match="nsp: next-sentence prediction needs BERT's head; scratch.architecture"):
        spec_from_dict(spec_for("scratch", corpus, tmp_path / "bad", scratch=scratch), str(tmp_path))
    spec = spec_for("scratch", corpus, tmp_path / "run", scratch=scratch, nsp=False)
    metrics, run_dir = run_spec(spec, str(tmp_path))
    evals = [m for m in read_jsonl(os.path.join(run_dir, "metrics.jsonl")) if "validation/perplexity" in m]
    assert evals[-1]["validation/perplexity"] < 0.5 * evals[0]["validation/perplexity"]
    best = os.path.join(run_dir, "best")
    tok = AutoTokenizer.from_pretrained(best)
    assert 256 < len(tok) <= 400 and tok.tokenize("the cat")[1] == "\u0120cat"   # byte-level, space marker
    model, info = AutoModelForMaskedLM.from_pretrained(best, output_loading_info=True)
    assert type(model).__name__ == "RobertaForMaskedLM" and not info["missing_keys"] and not info["unexpected_keys"]
    assert model.config.max_position_embeddings == 64 + tok.pad_token_id + 1 and model.config.type_vocab_size == 1


def test_scratch_max_length_over_positions_is_a_spec_error(corpus, tmp_path):
    from taskbert import SpecError

    spec = spec_for("scratch", corpus, tmp_path / "run", scratch={"max_positions": 32, "vocab_size": 100,
                                                                  "layers": 1, "hidden": 16, "heads": 2})
    with pytest.raises(SpecError, match="encoder.max_length: 48 exceeds task_options.scratch.max_positions 32"):
        run_spec(spec, str(tmp_path))
    assert not os.path.exists(tmp_path / "run")


def test_ready_specs_load():
    from taskbert.config.spec import load_spec

    root = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "task_specs")
    mlm = load_spec(os.path.join(root, "mlm-wiki.yaml"))
    assert mlm.task == "pretraining" and mlm.options.nsp and mlm.options.masking == "dynamic"
    adapted = load_spec(os.path.join(root, "sentiment-adapted.yaml"))
    # the fine-tuning spec starts from the pretraining run's best/
    assert adapted.encoder.model == "../runs/mlm-wiki/best"
    assert os.path.normpath(os.path.join(root, adapted.encoder.model)) == os.path.join(os.path.dirname(mlm.output), "mlm-wiki", "best")


def test_the_step_0_evaluation_reaches_the_loggers(encoder, corpus, tmp_path, capsys):
    """Loggers are made before other plugins' train_start, so the evaluation pretraining
    records there is printed, not only written to metrics.jsonl."""
    spec = spec_for(encoder, corpus, tmp_path / "run")
    spec["train"].update(max_steps=2, eval_every=2, loggers=["console"])
    run_spec(spec, str(tmp_path))
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "validation/perplexity" in ln]
    assert lines and lines[0].startswith("step 0/2:"), lines
