"""What plugin authors ran into, each fixed and held here: Options metadata that works (and a
misspelt key refused), label_list returning a string, pad_fields that default to none,
per-row vector fields, and tasks that add tokens and see the tokenizer in build_head."""

import dataclasses
import json
import os
import random

import pytest
import torch

import taskbert
from taskbert import Task
from taskbert.config.schema import build
from taskbert.data.batching import collate
from taskbert.plugins.manager import Registries, get_plugin_manager
from taskbert.testing import FILLER, run_spec, tiny_classification_spec


def _register(task_cls, name="author-points"):
    class Plugin:
        @taskbert.hookimpl
        def taskbert_register_tasks(self, register):
            register(task_cls)

    pm = get_plugin_manager()
    pm.register(Plugin(), name=name)
    try:
        return Registries(pm)
    finally:
        pm.unregister(name=name)


def test_a_misspelt_options_metadata_key_is_refused_when_the_task_registers():
    @dataclasses.dataclass(frozen=True)
    class BadOptions:
        rate: float = dataclasses.field(default=0.5, metadata={"mni": 0})

    class Bad(Task):
        name = "bad_metadata"
        Options = BadOptions

    with pytest.raises(taskbert.TaskbertError) as info:
        _register(Bad)
    line = str(info.value)
    assert "plugin 'author-points', task 'bad_metadata'" in line and "metadata key 'mni' does nothing" in line
    assert "did you mean 'min'?" in line and "known: help, min, max, gt, choices" in line


def test_choices_metadata_is_checked_and_bounds_still_hold():
    @dataclasses.dataclass(frozen=True)
    class Options:
        mode: str = dataclasses.field(default="a", metadata={"choices": ("a", "b"), "help": "which"})
        rate: float = dataclasses.field(default=0.5, metadata={"min": 0, "max": 1})

    ctx = {"file": "spec.yaml"}
    assert build(Options, {"mode": "b"}, "task_options", ctx).mode == "b"
    with pytest.raises(taskbert.SpecError, match=r"spec.yaml: task_options.mode: 'c' is not allowed; "
                                                 r"choose one of: 'a', 'b'"):
        build(Options, {"mode": "c"}, "task_options", ctx)
    with pytest.raises(taskbert.SpecError, match="task_options.rate: 2.0 is out of range; must be <= 1"):
        build(Options, {"rate": 2}, "task_options", ctx)


def test_label_list_returning_a_string_is_one_line_not_characters():
    from taskbert.cli.debug import _labels_of

    class Chars(Task):
        name = "chars"

        def label_list(self, example):
            return example["label"]          # a string, not a list of strings

    with pytest.raises(taskbert.RunError, match="label_list must return a list of label strings or None, got str"):
        _labels_of(Chars(), {"label": "positive"})
    assert _labels_of(Task(), {"label": "x"}) is None      # the default: no gold, no labels


def test_pad_fields_default_to_none_and_a_scalar_in_them_is_one_line():
    assert Task.pad_fields == {} and Task.vector_fields == ()
    rows = [{"input_ids": [1, 2, 3], "label": 1}, {"input_ids": [1, 2], "label": 0}]
    batch = collate(rows, 0, Task.pad_fields)
    assert batch["label"].tolist() == [1, 0] and batch["input_ids"].tolist() == [[1, 2, 3], [1, 2, 0]]
    with pytest.raises(taskbert.RunError, match="'label' is in the task's pad_fields .* holds int 1"):
        collate(rows, 0, {"label": -100})


def test_vector_fields_become_one_tensor_per_batch():
    rows = [{"input_ids": [1, 2, 3], "target": [1.0, 0.0, 1.0], "offsets": [(0, 1)]},
            {"input_ids": [1, 2], "target": [0, 1, 0], "offsets": [(0, 2), (3, 4)]}]
    batch = collate(rows, 0, {}, vector_fields=("target",))
    assert batch["target"].dtype == torch.float and batch["target"].tolist() == [[1, 0, 1], [0, 1, 0]]
    assert batch["offsets"] == [[(0, 1)], [(0, 2), (3, 4)]]        # bookkeeping stays a list
    rows[1]["target"] = [0, 1]
    with pytest.raises(taskbert.RunError, match=r"'target' is in the task's vector_fields .* sizes \[2, 3\]"):
        collate(rows, 0, {}, vector_fields=("target",))


MARK = "<flag>"


def _flag_data(path, n, seed):
    """The label is whether the marker is in the text: only its (added) embedding tells."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(n):
            words = [rng.choice(FILLER) for _ in range(rng.randint(3, 8))]
            flagged = rng.random() < 0.5
            if flagged:
                words.insert(rng.randrange(len(words) + 1), MARK)
            fh.write(json.dumps({"text": " ".join(words), "label": "flag" if flagged else "none"}) + "\n")
    return str(path)


def test_a_task_adds_a_token_and_sees_the_tokenizer_in_build_head(tiny_encoder, tmp_path, monkeypatch):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from taskbert.cli.runs import load_run, predict_examples
    from taskbert_plugins.classification import SentenceClassification

    original = SentenceClassification.build_head
    seen = {}

    def build_head(self, encoder, tokenizer):
        seen["id"] = tokenizer.convert_tokens_to_ids(MARK)
        seen["rows"] = encoder.get_input_embeddings().num_embeddings
        return original(self, encoder)

    monkeypatch.setattr(SentenceClassification, "added_tokens", lambda self: [MARK])
    monkeypatch.setattr(SentenceClassification, "build_head", build_head)
    vocab = AutoTokenizer.from_pretrained(tiny_encoder)
    assert MARK not in vocab.get_vocab()
    train, dev = _flag_data(tmp_path / "train.jsonl", 320, 1), _flag_data(tmp_path / "dev.jsonl", 40, 2)
    metrics, run_dir = run_spec(tiny_classification_spec(tiny_encoder, train, dev, tmp_path / "run", epochs=6),
                                str(tmp_path))
    assert seen == {"id": len(vocab), "rows": len(vocab) + 1}   # the new token, embeddings grown
    assert metrics["validation/accuracy"] > 0.85                 # learnt from the new row alone
    best = os.path.join(run_dir, "best")
    tokenizer = AutoTokenizer.from_pretrained(best)
    ids = tokenizer(f"a {MARK}b")["input_ids"]
    assert len(vocab) in ids and tokenizer.convert_ids_to_tokens(len(vocab)) == MARK   # never split
    plain = AutoModelForSequenceClassification.from_pretrained(best).eval()
    assert plain.config.vocab_size == len(vocab) + 1
    texts = [json.loads(line)["text"] for line in open(dev, encoding="utf-8")]
    with torch.no_grad():
        logits = plain(**tokenizer(texts, padding=True, return_tensors="pt")).logits
    theirs = [plain.config.id2label[i] for i in logits.argmax(-1).tolist()]
    loaded = load_run(run_dir)
    ours = [p["label"] for p in predict_examples(loaded, [{"text": t, "label": None} for t in texts])]
    assert ours == theirs
