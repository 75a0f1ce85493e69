"""End to end: every built-in task trains from a ``save_to_disk`` folder and from a Parquet
file (datasets built in the test, no network); ClassLabel names become id2label; an Arrow
file and a hub id found in a fake offline cache read the same way."""

import json
import os
import re

import pytest

pytest.importorskip("datasets")

import hf_data  # noqa: E402  (tests/tasks/hf_data.py)

from taskbert.testing import make_tiny_encoder, run_spec  # noqa: E402

SOURCES = ["disk", "parquet"]
TRAIN = {"batch_size": 16, "lr": 3.0e-3, "log_every": 2, "seed": 3, "loggers": []}


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return make_tiny_encoder(str(tmp_path_factory.mktemp("enc")), hf_data.WORDS, max_positions=64)


def losses(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as fh:
        return [r["train/loss"] for r in map(json.loads, fh) if "train/loss" in r]


def config(run_dir):
    with open(os.path.join(run_dir, "best", "config.json"), encoding="utf-8") as fh:
        return json.load(fh)


def train(tmp_path, encoder, task, train_ds, dev_ds, kind, options=None, epochs=3, max_length=32, **data):
    spec = {"task": task, "encoder": {"model": encoder, "max_length": max_length},
            "data": {"train": hf_data.write(train_ds, tmp_path, "train", kind),
                     "validation": hf_data.write(dev_ds, tmp_path, "dev", kind), **data},
            "task_options": options or {}, "train": {"epochs": epochs, **TRAIN},
            "output": str(tmp_path / "run")}
    return run_spec(spec, str(tmp_path))


@pytest.mark.parametrize("kind", SOURCES)
def test_sentence_classification(tmp_path, encoder, kind):
    metrics, run_dir = train(tmp_path, encoder, "sentence_classification", hf_data.polarity(400, 1),
                             hf_data.polarity(80, 2), kind, {"text_field": "sentence"}, epochs=4)
    assert metrics["validation/accuracy"] > 0.8
    # the ClassLabel's own order (positive=0), not the sorted names
    assert config(run_dir)["id2label"] == {"0": "positive", "1": "negative"}
    with open(os.path.join(run_dir, "manifest.json"), encoding="utf-8") as fh:
        data = json.load(fh)["data"]
    assert set(data) == {"train", "validation"} and len(data["train"]["sha256"]) == 64


@pytest.mark.parametrize("kind", SOURCES)
def test_sentence_pair(tmp_path, encoder, kind):
    metrics, run_dir = train(tmp_path, encoder, "sentence_pair", hf_data.pairs(400, 1), hf_data.pairs(80, 2),
                             kind, {"text_a_field": "premise", "text_b_field": "hypothesis"}, epochs=4)
    assert metrics["validation/accuracy"] > 0.8
    assert config(run_dir)["id2label"] == {"0": "positive", "1": "negative"}


@pytest.mark.parametrize("kind", SOURCES)
def test_token_classification(tmp_path, encoder, kind):
    metrics, run_dir = train(tmp_path, encoder, "token_classification", hf_data.tagging(300, 1),
                             hf_data.tagging(60, 2), kind, {"tags_field": "ner_tags"}, epochs=3)
    assert metrics["validation/f1"] > 0.5
    assert config(run_dir)["id2label"] == {"0": "O", "1": "B-per", "2": "B-loc"}   # Sequence(ClassLabel)


@pytest.mark.parametrize("kind", SOURCES)
def test_extractive_qa_squad_layout(tmp_path, encoder, kind):
    metrics, run_dir = train(tmp_path, encoder, "extractive_qa", hf_data.squad(200, 1), hf_data.squad(40, 2),
                             kind, {"window_overlap_tokens": 8, "max_question_tokens": 8}, epochs=2, max_length=48)
    seen = losses(run_dir)
    assert seen[-1] < seen[0] * 0.8
    assert "validation/f1" in metrics


@pytest.mark.parametrize("kind", SOURCES)
def test_pretraining_from_text_column(tmp_path, encoder, kind):
    from taskbert import load_spec, prepare
    from taskbert.testing import write_spec

    spec = {"task": "pretraining", "encoder": {"model": encoder, "max_length": 48},
            "data": {"train": hf_data.write(hf_data.documents(150, 1), tmp_path, "train", kind),
                     "validation": hf_data.write(hf_data.documents(20, 2), tmp_path, "dev", kind)},
            "task_options": {"cache_dir": str(tmp_path / "cache")},
            "train": {"epochs": 4, **TRAIN}, "output": str(tmp_path / "run")}
    example = prepare(load_spec(write_spec(spec, str(tmp_path)))).examples["train"][0]
    assert "text" not in example and example["row"] == 0   # the example names its row, the text stays on disk
    metrics, run_dir = run_spec(spec, str(tmp_path))
    seen = losses(run_dir)
    assert seen[-1] < seen[0] * 0.8
    assert metrics["validation/perplexity"] > 1


@pytest.mark.parametrize("kind", SOURCES)
def test_feature_classification(tmp_path, encoder, kind):
    metrics, run_dir = train(tmp_path, encoder, "feature_classification", hf_data.polarity(400, 1, "text"),
                             hf_data.polarity(80, 2, "text"), kind,
                             {"layers": "mean_all", "pooling": "mean", "head": "mlp",
                              "cache_dir": str(tmp_path / "cache")}, epochs=10)
    assert metrics["validation/accuracy"] >= 0.75   # balanced labels: chance is 0.5
    assert config(run_dir)["id2label"] == {"0": "positive", "1": "negative"}


def test_arrow_file_and_limit(tmp_path, encoder):
    """An Arrow file reads like the others, and data.limit stops reading it early."""
    from taskbert import load_spec, prepare
    from taskbert.testing import write_spec

    spec = {"task": "sentence_classification", "encoder": {"model": encoder, "max_length": 32},
            "data": {"train": hf_data.write(hf_data.polarity(300, 1), tmp_path, "train", "arrow"),
                     "limit": {"train": 25}},
            "task_options": {"text_field": "sentence"}}
    examples = prepare(load_spec(write_spec(spec, str(tmp_path)))).examples["train"]
    assert len(examples) == 25 and examples[3]["where"].endswith("train.arrow:row 3")
    assert examples[3]["label"] == ["positive", "negative"][hf_data.polarity(300, 1)[3]["label"]]


def test_hub_id_offline_from_the_local_cache(tmp_path, encoder, monkeypatch):
    """With HF_HUB_OFFLINE a hub id is read from datasets' cache; the manifest records its
    fingerprint; a split or config the cache lacks is one line listing what exists."""
    import datasets.config

    cache = hf_data.fake_hub_cache(tmp_path / "cache", "someone/tiny-polarity",
                                   {"train": hf_data.polarity(400, 1), "test": hf_data.polarity(80, 2)})
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub = {"hub": "someone/tiny-polarity"}
    spec = {"task": "sentence_classification", "encoder": {"model": encoder, "max_length": 32},
            "data": {"train": hub, "validation": {**hub, "split": "test"}},
            "task_options": {"text_field": "sentence"}, "train": {"epochs": 4, **TRAIN},
            "output": str(tmp_path / "run")}
    metrics, run_dir = run_spec(spec, str(tmp_path))
    assert metrics["validation/accuracy"] > 0.8
    assert config(run_dir)["id2label"] == {"0": "positive", "1": "negative"}
    with open(os.path.join(run_dir, "manifest.json"), encoding="utf-8") as fh:
        train_entry = json.load(fh)["data"]["train"]
    assert train_entry["hub"] == "someone/tiny-polarity" and train_entry["split"] == "train"
    assert len(train_entry["fingerprint"]) >= 16


@pytest.mark.parametrize("change, expect", [
    ({"split": "validation"}, "someone/tiny-polarity (split validation): Unknown split \"validation\". "
                              "Should be one of ['train']."),
    ({"config": "mnli"}, "Couldn't find cache for someone/tiny-polarity for config 'mnli' "
                         "Available configs in the cache: ['default']"),
])
def test_hub_split_or_config_the_cache_lacks_is_one_line(tmp_path, encoder, monkeypatch, change, expect):
    import datasets.config
    from click.testing import CliRunner

    from taskbert.cli import cli
    from taskbert.testing import write_spec

    cache = hf_data.fake_hub_cache(tmp_path / "cache", "someone/tiny-polarity", {"train": hf_data.polarity(8, 1)})
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    spec = {"task": "sentence_classification", "encoder": {"model": encoder, "max_length": 32},
            "data": {"train": {"hub": "someone/tiny-polarity", **change}}}
    result = CliRunner().invoke(cli, ["validate", write_spec(spec, str(tmp_path))])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0], lines


def test_missing_datasets_library_is_one_line(tmp_path, monkeypatch):
    """Without the extra, reading a datasets source says which extra to install."""
    import sys

    from taskbert import DataError
    from taskbert_plugins.hf_datasets import read_parquet

    monkeypatch.setitem(sys.modules, "datasets", None)   # import datasets now raises ImportError
    with pytest.raises(DataError, match=r"^x.parquet: reading it needs the Hugging Face datasets library: "
                                        r"pip install 'taskbert\[datasets\]'$"):
        read_parquet("x.parquet", {})


def test_trust_remote_code_is_off_unless_the_spec_sets_it(tmp_path):
    from taskbert import load_spec
    from taskbert.testing import write_spec

    spec = {"task": "sentence_classification", "data": {"train": {"hub": "imdb"}, "test": {
        "hub": "nyu-mll/glue", "config": "sst2", "split": "validation", "trust_remote_code": True}}}
    loaded = load_spec(write_spec(spec, str(tmp_path)))
    assert loaded.data.train.trust_remote_code is False and loaded.data.train.split == "train"
    assert loaded.data.test.trust_remote_code is True and loaded.data.test.config == "sst2"
    assert loaded.to_dict()["data"]["test"]["hub"] == "nyu-mll/glue"   # spec.yaml keeps the mapping


def test_taskbert_offline_keeps_datasets_off_the_network(tmp_path, monkeypatch):
    """TASKBERT_OFFLINE alone (datasets read HF_HUB_OFFLINE on import, as unset) still means
    the hub is not contacted: datasets' offline switch is on while it loads."""
    import datasets
    import datasets.config

    from taskbert.data.sources import HubSource
    from taskbert_plugins.hf_datasets import load

    seen = []
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TASKBERT_OFFLINE", "1")
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: seen.append(datasets.config.HF_HUB_OFFLINE) or "ds")
    assert load.load_hub(datasets, HubSource(hub="someone/x", split="train")) == "ds"
    assert seen == [True] and datasets.config.HF_HUB_OFFLINE is False


def test_predict_from_parquet_and_resume_refuses_changed_folder(tmp_path, encoder):
    """``predict`` reads a Parquet input (labels by name); ``--resume`` after the
    save_to_disk folder was rewritten with other rows is refused in one line."""
    import shutil

    from click.testing import CliRunner

    from taskbert.cli import cli
    from taskbert.testing import write_spec

    spec = {"task": "sentence_classification", "encoder": {"model": encoder, "max_length": 32},
            "data": {"train": hf_data.write(hf_data.polarity(400, 1), tmp_path, "train", "disk")},
            "task_options": {"text_field": "sentence"}, "train": {"epochs": 3, **TRAIN},
            "output": str(tmp_path / "run")}
    _, run_dir = run_spec(spec, str(tmp_path))
    inputs = hf_data.write(hf_data.polarity(40, 5), tmp_path, "inputs", "parquet")
    result = CliRunner().invoke(cli, ["predict", run_dir, inputs, "-o", str(tmp_path / "p.jsonl")])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "p.jsonl", encoding="utf-8") as fh:
        predicted = [json.loads(line)["label"] for line in fh]
    gold = [hf_data.POLARITY[y] for y in hf_data.polarity(40, 5)["label"]]
    assert sum(p == g for p, g in zip(predicted, gold)) / len(gold) > 0.8

    shutil.rmtree(tmp_path / "train")
    hf_data.write(hf_data.polarity(400, 9), tmp_path, "train", "disk")
    result = CliRunner().invoke(cli, ["run", write_spec(spec, str(tmp_path)), "--resume"])
    assert result.exit_code == 2, result.output
    assert "data.train" in result.stderr and "SHA-256 differs from manifest.json" in result.stderr


@pytest.mark.parametrize("kind", SOURCES)
def test_pretraining_reads_back_the_right_rows(tmp_path, kind, monkeypatch):
    """Documents kept as row numbers read back as their own texts, in order, across the
    1000-row chunks of the memory map (Parquet: its row groups of 700) and past blank rows
    the task leaves out; the source is opened once for the whole read, not once a chunk."""
    import datasets
    import pyarrow.parquet as pq

    from taskbert import registries
    from taskbert_plugins.hf_datasets import read_datasets, read_parquet
    from taskbert_plugins.pretraining.text import document_texts

    texts = [f"Document {i} says {i * 7}." if i % 5 else "   " for i in range(2500)]
    ds = datasets.Dataset.from_dict({"text": texts})
    if kind == "disk":
        path, reader = hf_data.write(ds, tmp_path, "docs", "disk"), read_datasets
    else:
        path, reader = str(tmp_path / "docs.parquet"), read_parquet
        pq.write_table(ds.data.table, path, row_group_size=700)
        assert pq.ParquetFile(path).num_row_groups == 4
    task = registries().tasks.get("pretraining")()
    examples = [ex for ex in (task.example_from_record(r, f"docs:{n}") for n, r in reader(path, {}))
                if ex is not None]
    assert len(examples) == 2000 and all("text" not in ex for ex in examples)
    opens = []
    if kind == "disk":
        real = datasets.load_from_disk
        monkeypatch.setattr(datasets, "load_from_disk", lambda *a, **k: opens.append(a) or real(*a, **k))
    else:
        real = pq.ParquetFile
        monkeypatch.setattr(pq, "ParquetFile", lambda *a, **k: opens.append(a) or real(*a, **k))
    assert list(document_texts(examples)) == [t for t in texts if t.strip()]
    assert len(opens) == 1


@pytest.mark.parametrize("source, expect", [
    ({"config": "mnli"}, "data.validation: a mapping names a hub dataset and needs 'hub'"),
    ({"hub": " "}, "data.validation.hub: must name a dataset, got ' '"),
    ({"hub": "imdb", "revison": "main"}, "unknown key 'data.validation.revison' (did you mean 'revision'?)"),
])
def test_a_bad_hub_mapping_is_one_line(tmp_path, source, expect):
    from taskbert import SpecError, load_spec
    from taskbert.testing import write_spec

    spec = {"task": "sentence_classification", "data": {"train": "t.jsonl", "validation": source}}
    with pytest.raises(SpecError, match=re.escape(expect)):
        load_spec(write_spec(spec, str(tmp_path)))
