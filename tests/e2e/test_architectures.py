"""Every encoder architecture: ``best/`` loads in plain transformers' ``AutoModelFor*`` with
no missing or unexpected keys and predicts what ``taskbert predict`` predicts.

Tiny random encoders of each architecture (2 layers, hidden 32, a WordPiece vocabulary) are
trained for a few steps; the check is on the saved layout and the reload, not on accuracy.
"""

import inspect
import json

import pytest
import torch
from click.testing import CliRunner

from taskbert.cli import cli
from taskbert.testing import TINY_WORDS, make_tiny_encoder, run_spec, tiny_classification_spec, write_polarity_data
from tests.tasks.test_tagging_e2e import FILLER, LOC, PER, write_conll

ARCHITECTURES = ["bert", "roberta", "xlm-roberta", "camembert", "distilbert", "electra", "albert", "mpnet",
                 "deberta-v2", "modernbert"]


def _predict(run_dir, rows, tmp_path):
    source = tmp_path / "inputs.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = CliRunner().invoke(cli, ["predict", str(run_dir), str(source)])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def _reload(auto_class, folder):
    from transformers import AutoTokenizer

    model, info = auto_class.from_pretrained(folder, output_loading_info=True)
    assert info["missing_keys"] == set() or not info["missing_keys"], info["missing_keys"]
    assert not info["unexpected_keys"], info["unexpected_keys"]
    return model.eval(), AutoTokenizer.from_pretrained(folder)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_a_classifier_reloads_with_its_own_head_and_the_same_predictions(arch, tmp_path):
    from transformers import AutoModelForSequenceClassification

    encoder = make_tiny_encoder(str(tmp_path / "enc"), TINY_WORDS, model_type=arch)
    train = write_polarity_data(tmp_path / "train.jsonl", 96, 1)
    dev = write_polarity_data(tmp_path / "dev.jsonl", 32, 2)
    _, run_dir = run_spec(tiny_classification_spec(encoder, train, dev, tmp_path / "run", epochs=1), str(tmp_path))
    model, tokenizer = _reload(AutoModelForSequenceClassification, f"{run_dir}/best")
    with open(dev, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh][:16]
    ours = _predict(run_dir, rows, tmp_path)
    enc = tokenizer([r["text"] for r in rows], padding=True, return_tensors="pt")
    with torch.no_grad():
        probs = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits.softmax(-1)
    theirs = [model.config.id2label[i] for i in probs.argmax(-1).tolist()]
    assert [p["label"] for p in ours] == theirs
    ours_probs = torch.tensor([[p["probabilities"][model.config.id2label[i]] for i in range(probs.size(1))]
                               for p in ours])
    assert torch.allclose(ours_probs, probs, atol=1e-4)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_a_tagger_reloads_with_its_own_head_and_the_same_tags(arch, tmp_path):
    from transformers import AutoModelForTokenClassification

    encoder = make_tiny_encoder(str(tmp_path / "enc"), PER + LOC + FILLER + ["acme", "corp", "y"], model_type=arch)
    spec = {"task": "token_classification", "encoder": {"model": encoder, "max_length": 32},
            "data": {"format": "conll", "train": write_conll(tmp_path / "train.txt", 64, 1),
                     "validation": write_conll(tmp_path / "dev.txt", 16, 2)},
            "train": {"epochs": 1, "batch_size": 16, "lr": 3e-3, "loggers": []}, "output": str(tmp_path / "run")}
    _, run_dir = run_spec(spec, str(tmp_path))
    model, tokenizer = _reload(AutoModelForTokenClassification, f"{run_dir}/best")
    sentences = [["alice", "lives", "in", "paris"], ["bobby", "works", "at", "acme", "corp"], ["london"]]
    ours = _predict(run_dir, [{"tokens": s} for s in sentences], tmp_path)
    for words, pred in zip(sentences, ours):
        enc = tokenizer([words], is_split_into_words=True, return_tensors="pt")
        with torch.no_grad():
            logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits[0]
        word_ids = enc.word_ids(0)
        firsts = [word_ids.index(w) for w in range(len(words))]   # word_pooling: first
        assert pred["tags"] == [model.config.id2label[int(logits[i].argmax())] for i in firsts]


def test_a_run_saved_before_own_layouts_still_loads(tmp_path):
    """A ``taskbert.json`` without ``head_layout`` is a run of an earlier version: its BERT-style
    head and the encoder's pooler (saved then, unread by a tagger) load as they were saved."""
    from safetensors.torch import load_file, save_file

    from taskbert.cli.runs import load_run, predict_examples

    encoder = make_tiny_encoder(str(tmp_path / "enc"), PER + LOC + FILLER, model_type="roberta")
    spec = {"task": "token_classification", "encoder": {"model": encoder, "max_length": 32},
            "data": {"format": "conll", "train": write_conll(tmp_path / "train.txt", 48, 1),
                     "validation": write_conll(tmp_path / "dev.txt", 8, 2)},
            "train": {"epochs": 1, "batch_size": 16, "loggers": []}, "output": str(tmp_path / "run")}
    _, run_dir = run_spec(spec, str(tmp_path))
    best = f"{run_dir}/best"
    examples = [{"tokens": ["alice", "lives", "in", "paris"], "tags": None, "where": "x:1"}]
    now = predict_examples(load_run(best), examples)
    # rewrite best/ as an earlier version saved a RoBERTa tagger: classifier.* at the top (the
    # BERT-style head has the same two tensors for a tagger), the pooler kept, no head_layout
    state = load_file(f"{best}/model.safetensors")
    hidden = state["classifier.weight"].shape[1]
    state["roberta.pooler.dense.weight"] = torch.zeros(hidden, hidden)
    state["roberta.pooler.dense.bias"] = torch.zeros(hidden)
    save_file(state, f"{best}/model.safetensors", metadata={"format": "pt"})
    with open(f"{best}/taskbert.json", encoding="utf-8") as fh:
        info = json.load(fh)
    assert info["task_state"].pop("head_layout") == "own"
    with open(f"{best}/taskbert.json", "w", encoding="utf-8") as fh:
        json.dump(info, fh)
    loaded = load_run(best)
    assert loaded.task.head_layout == "legacy" and loaded.model.encoder.pooler is not None
    assert predict_examples(loaded, examples) == now


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_a_qa_model_reloads_with_its_own_head_and_the_same_logits(arch, tmp_path):
    from transformers import AutoModelForQuestionAnswering

    from taskbert import EvalLoader, pad_id
    from taskbert.cli.runs import load_run
    from tests.tasks.test_qa_e2e import MAX_LENGTH, OPTIONS, WORDS, write_qa

    encoder = make_tiny_encoder(str(tmp_path / "enc"), WORDS, model_type=arch)
    write_qa(tmp_path / "train.jsonl", 48, 1)
    dev = write_qa(tmp_path / "dev.jsonl", 8, 2)
    spec = {"task": "extractive_qa", "encoder": {"model": encoder, "max_length": MAX_LENGTH},
            "data": {"train": str(tmp_path / "train.jsonl"), "validation": str(tmp_path / "dev.jsonl")},
            "task_options": OPTIONS, "train": {"epochs": 1, "batch_size": 16, "loggers": []},
            "output": str(tmp_path / "run")}
    _, run_dir = run_spec(spec, str(tmp_path))
    model, _ = _reload(AutoModelForQuestionAnswering, f"{run_dir}/best")
    loaded = load_run(f"{run_dir}/best")
    examples = [{"question": r["question"], "context": r["context"], "id": r["id"], "answers": None,
                 "where": "x:1"} for r in dev]
    rows = loaded.task.encode_all(examples, loaded.tokenizer, MAX_LENGTH)
    for _, batch in EvalLoader(rows, 8, pad_id(loaded.tokenizer), loaded.task.pad_fields):
        with torch.no_grad():
            ours = loaded.model(batch)
            types = {"token_type_ids": batch["token_type_ids"]} if "token_type_ids" in batch and \
                "token_type_ids" in inspect.signature(model.forward).parameters else {}
            theirs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **types)
        allowed = batch["passage_mask"].bool()
        allowed[:, 0] = True
        assert torch.allclose(ours["start_logits"][allowed], theirs.start_logits[allowed].float(), atol=1e-5)
        assert torch.allclose(ours["end_logits"][allowed], theirs.end_logits[allowed].float(), atol=1e-5)
    # ONNX export: refused in one line (the head reads the passage mask, which the graph does not take)
    result = CliRunner().invoke(cli, ["export", run_dir, "--format", "onnx", "-o", str(tmp_path / "onnx")])
    assert result.exit_code == 2 and "reads batch field 'passage_mask'" in result.stderr


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_a_pair_classifier_reloads_with_its_own_head_and_the_same_predictions(arch, tmp_path):
    """Sentence pairs: ``[CLS] a [SEP] b [SEP]`` with segment ids where the tokenizer makes
    them, read the same way by the reloaded model."""
    import random

    from transformers import AutoModelForSequenceClassification

    rng = random.Random(0)

    def pair():
        a, b = (" ".join(rng.choice(TINY_WORDS) for _ in range(rng.randint(2, 6))) for _ in range(2))
        return {"sentence1": a, "sentence2": b, "label": rng.choice(["yes", "no"])}

    for name, n in (("train", 64), ("dev", 16)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(pair()) + "\n" for _ in range(n)))
    encoder = make_tiny_encoder(str(tmp_path / "enc"), TINY_WORDS, model_type=arch)
    spec = {"task": "sentence_pair", "encoder": {"model": encoder, "max_length": 32},
            "data": {"train": str(tmp_path / "train.jsonl"), "validation": str(tmp_path / "dev.jsonl")},
            "train": {"epochs": 1, "batch_size": 16, "loggers": []}, "output": str(tmp_path / "run")}
    _, run_dir = run_spec(spec, str(tmp_path))
    model, tokenizer = _reload(AutoModelForSequenceClassification, f"{run_dir}/best")
    rows = [pair() for _ in range(8)]
    ours = _predict(run_dir, rows, tmp_path)
    enc = tokenizer([r["sentence1"] for r in rows], [r["sentence2"] for r in rows], padding=True,
                    return_tensors="pt")
    types = {"token_type_ids": enc["token_type_ids"]} if "token_type_ids" in enc and \
        "token_type_ids" in inspect.signature(model.forward).parameters else {}
    with torch.no_grad():
        logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], **types).logits
    assert [p["label"] for p in ours] == [model.config.id2label[i] for i in logits.argmax(-1).tolist()]


@pytest.mark.parametrize("arch", ["roberta", "xlm-roberta", "camembert", "distilbert", "electra", "albert", "mpnet",
                                  "deberta-v2",
                                  "modernbert"])
def test_masked_lm_pretrains_with_the_architectures_own_head(arch, tmp_path):
    """Masked LM on any architecture: its own MLM head (ELECTRA and ALBERT project to an
    embedding size other than the hidden size), ``best/`` reloads in ``AutoModelForMaskedLM``
    with no missing keys and the same logits at the masked positions; next-sentence
    prediction, which needs BERT's head and two token types, is refused in one line."""
    from transformers import AutoModelForMaskedLM

    from taskbert.cli.runs import load_run
    from taskbert.testing import write_spec
    from tests.tasks.test_pretraining_text import WORDS, documents, write_corpus

    encoder = make_tiny_encoder(str(tmp_path / "enc"), WORDS, model_type=arch, max_positions=64)
    spec = {"task": "pretraining", "encoder": {"model": encoder, "max_length": 48},
            "data": {"train": write_corpus(tmp_path / "train.txt", documents(40, 1)),
                     "validation": write_corpus(tmp_path / "dev.txt", documents(8, 2))},
            "task_options": {"cache_dir": str(tmp_path / "cache"), "nsp": True},
            "train": {"epochs": 1, "batch_size": 16, "loggers": []}, "output": str(tmp_path / "run")}
    result = CliRunner().invoke(cli, ["validate", write_spec(spec, str(tmp_path))])
    assert result.exit_code == 2 and "task_options.nsp: next-sentence prediction needs BERT's" in result.stderr
    spec["task_options"]["nsp"] = False
    _, run_dir = run_spec(spec, str(tmp_path))
    model, _ = _reload(AutoModelForMaskedLM, f"{run_dir}/best")
    loaded = load_run(f"{run_dir}/best")
    ids = torch.randint(5, 40, (2, 12))
    labels = torch.full_like(ids, -100)
    labels[0, 3], labels[1, 7], labels[1, 2] = 9, 11, 13
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "mlm_labels": labels}
    with torch.no_grad():
        ours = loaded.model(batch)["mlm_logits"]
        theirs = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[labels != -100]
    assert torch.allclose(ours, theirs, atol=1e-4)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_a_run_with_an_own_head_resumes_bit_identically(arch, tmp_path):
    """A crash at step 12 of a classifier run (its head the architecture's own where it has one, dropout 0.2),
    then ``--resume``: weights, predictions and metrics equal the uninterrupted run's."""
    from taskbert.config.spec import load_spec
    from taskbert.run import execute
    from taskbert.testing import Crash, crash_at
    from tests.e2e.test_resume import assert_same_run, resume_spec

    encoder = make_tiny_encoder(str(tmp_path / "enc"), TINY_WORDS, model_type=arch)
    data = (write_polarity_data(tmp_path / "train.jsonl", 120, 1), write_polarity_data(tmp_path / "dev.jsonl", 20, 2))
    reference = load_spec(resume_spec(str(tmp_path / "reference"), encoder, data, epochs=2))
    execute(reference)
    spec = load_spec(resume_spec(str(tmp_path / "crash"), encoder, data, epochs=2))
    with crash_at(12), pytest.raises(Crash):
        execute(spec)
    execute(spec, resume=True)
    assert_same_run(spec.output, reference.output, f"({arch})")


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_an_own_head_exports_to_onnx_and_serves_the_same_predictions(arch, tmp_path):
    """``export --format onnx`` passes its own parity check, and ``serve`` (torch and the ONNX
    folder) answers what ``taskbert predict`` writes."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from taskbert.cli.serve import Predictor

    encoder = make_tiny_encoder(str(tmp_path / "enc"), TINY_WORDS, model_type=arch)
    train = write_polarity_data(tmp_path / "train.jsonl", 64, 1)
    dev = write_polarity_data(tmp_path / "dev.jsonl", 16, 2)
    _, run_dir = run_spec(tiny_classification_spec(encoder, train, dev, tmp_path / "run", epochs=1), str(tmp_path))
    out = str(tmp_path / "onnx")
    result = CliRunner().invoke(cli, ["export", run_dir, "--format", "onnx", "-o", out])
    assert result.exit_code == 0 and "100% same predictions" in result.output, result.output
    with open(dev, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh][:8]
    ours = _predict(run_dir, rows, tmp_path)
    examples = [{"text": r["text"], "label": None, "where": f"x:{i}"} for i, r in enumerate(rows)]
    for folder in (run_dir, out):
        served = Predictor(folder).predict(examples)
        assert [p["label"] for p in served] == [p["label"] for p in ours]


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_feature_classification_runs_on_every_architecture(arch, tmp_path):
    """A frozen encoder's cached features feed a light head on any architecture; predict
    gives what the run wrote for the same texts."""
    encoder = make_tiny_encoder(str(tmp_path / "enc"), TINY_WORDS, model_type=arch)
    train = write_polarity_data(tmp_path / "train.jsonl", 64, 1)
    dev = write_polarity_data(tmp_path / "dev.jsonl", 16, 2)
    spec = tiny_classification_spec(encoder, train, dev, tmp_path / "run", epochs=1)
    spec.update(task="feature_classification", task_options={"cache_dir": str(tmp_path / "cache"), "layers": "scalar_mix"})
    _, run_dir = run_spec(spec, str(tmp_path))
    with open(f"{run_dir}/predictions.jsonl", encoding="utf-8") as fh:
        own = [p for p in map(json.loads, fh) if p["split"] == "validation"]
    with open(dev, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    assert [p["label"] for p in _predict(run_dir, rows, tmp_path)] == [p["label"] for p in own]


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_a_tagger_exports_to_onnx_on_every_architecture(arch, tmp_path):
    """The tagger's ONNX export passes its own parity check (the same tag for every word on
    the validation sentences)."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    encoder = make_tiny_encoder(str(tmp_path / "enc"), PER + LOC + FILLER + ["acme", "corp", "y"], model_type=arch)
    spec = {"task": "token_classification", "encoder": {"model": encoder, "max_length": 32},
            "data": {"format": "conll", "train": write_conll(tmp_path / "train.txt", 48, 1),
                     "validation": write_conll(tmp_path / "dev.txt", 8, 2)},
            "train": {"epochs": 1, "batch_size": 16, "loggers": []}, "output": str(tmp_path / "run")}
    _, run_dir = run_spec(spec, str(tmp_path))
    result = CliRunner().invoke(cli, ["export", run_dir, "--format", "onnx", "-o", str(tmp_path / "onnx")])
    assert result.exit_code == 0 and "100% same predictions" in result.output, result.output
