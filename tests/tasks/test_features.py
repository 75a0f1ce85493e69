"""Feature-based use, piece by piece, against values taken by hand from a tiny encoder:
layer choices, subtoken pooling, word units of the tagging windows, the feature cache
(key, invalidation, torn files) and the JSONL export."""

import json
import os
import random

import pytest
import torch
import yaml

from taskbert import SpecError
from taskbert_plugins.features import cache as fc
from taskbert_plugins.features.heads import (LAYER_CHOICES, LayerCombiner, extract_batch, layer_indices,
                                            pool_units)
from taskbert_plugins.features import extract_features

NOUNS = "cat dog house tree car".split()
VERBS = "runs sees eats likes".split()
DETS = "the a".split()


@pytest.fixture(scope="module")
def tiny4(tmp_path_factory):
    """A tiny BERT with 4 layers (the "last four" choices need four)."""
    from taskbert.testing import make_tiny_encoder

    return make_tiny_encoder(str(tmp_path_factory.mktemp("enc4")), NOUNS + VERBS + DETS, layers=4)


@pytest.fixture(scope="module")
def loaded(tiny4):
    from transformers import AutoModel, AutoTokenizer

    return AutoModel.from_pretrained(tiny4).eval(), AutoTokenizer.from_pretrained(tiny4)


def by_hand(loaded, texts):
    """The batch and every hidden state, straight from transformers."""
    encoder, tok = loaded
    batch = dict(tok(texts, padding=True, return_tensors="pt"))
    with torch.no_grad():
        hidden = encoder(**batch, output_hidden_states=True).hidden_states   # 5 x (batch, seq, 32)
    return batch, hidden


def test_each_layer_choice_matches_hidden_states_by_hand(loaded):
    encoder, _ = loaded
    batch, hs = by_hand(loaded, ["the cat sees a dog", "a tree"])
    n = int(batch["attention_mask"][0].sum())
    batch["unit_spans"] = [[[p, p + 1] for p in range(n)], [[0, 1]]]   # every token of row 0
    mix_w, gamma = torch.tensor([0.3, -1.0, 0.5, 2.0, 0.0]), 1.7
    soft = torch.softmax(mix_w, 0)
    expected = {
        "embeddings": hs[0], "last": hs[4], "second_to_last": hs[3],
        "sum_last_four": hs[1] + hs[2] + hs[3] + hs[4],
        "concat_last_four": torch.cat([hs[1], hs[2], hs[3], hs[4]], dim=-1),
        "mean_all": (hs[0] + hs[1] + hs[2] + hs[3] + hs[4]) / 5,
        "scalar_mix": gamma * sum(soft[j] * hs[j] for j in range(5)),
    }
    assert set(expected) == set(LAYER_CHOICES)
    for choice, want in expected.items():
        ids = layer_indices(choice, 4)
        units = extract_batch(encoder, batch, ids, "first")
        assert units[0].shape == (n, len(ids), 32) and units[1].shape == (1, len(ids), 32)
        combiner = LayerCombiner(choice, len(ids))
        if choice == "scalar_mix":
            with torch.no_grad():
                combiner.weights.copy_(mix_w)
                combiner.gamma.fill_(gamma)
        got = combiner(units[0])
        assert got.shape == (n, 128 if choice == "concat_last_four" else 32), choice
        assert torch.allclose(got, want[0, :n], atol=1e-5), choice
        assert torch.allclose(combiner(units[1])[0], want[1, 0], atol=1e-5), choice


def test_layers_above_the_chosen_ones_do_not_run(loaded):
    encoder, _ = loaded
    batch, _ = by_hand(loaded, ["the cat sees a dog"])
    batch["unit_spans"] = [[[0, 1]]]
    ran = []
    hooks = [layer.register_forward_hook(lambda m, a, o, i=i: ran.append(i))
             for i, layer in enumerate(encoder.encoder.layer)]
    try:
        for choice, want in (("embeddings", [0]), ("second_to_last", [0, 1, 2]), ("last", [0, 1, 2, 3])):
            ran.clear()
            extract_batch(encoder, batch, layer_indices(choice, 4), "first")
            assert ran == want, choice
            assert len(encoder.encoder.layer) == 4   # the stack is whole again afterwards
    finally:
        for h in hooks:
            h.remove()


def test_layer_choice_needs_enough_layers():
    assert layer_indices("last", 2) == [2] and layer_indices("mean_all", 2) == [0, 1, 2]
    with pytest.raises(SpecError, match="'sum_last_four' needs an encoder with at least 4 layers; this one has 2"):
        layer_indices("sum_last_four", 2)


def test_subtoken_pooling_first_mean_last_by_hand():
    hidden = torch.arange(5 * 2 * 3, dtype=torch.float).reshape(5, 2, 3)   # (seq, layers, dim)
    spans = torch.tensor([[1, 4], [4, 5]])
    assert torch.equal(pool_units(hidden, spans, "first"), hidden[[1, 4]])
    assert torch.equal(pool_units(hidden, spans, "last"), hidden[[3, 4]])
    mean = pool_units(hidden, spans, "mean")
    assert torch.allclose(mean[0], (hidden[1] + hidden[2] + hidden[3]) / 3) and torch.equal(mean[1], hidden[4])


def test_tagging_units_follow_words_and_windows(tiny4):
    from transformers import AutoTokenizer

    from taskbert_plugins.features.tagging import FeatureTagging, FeatureTaggingOptions

    tok = AutoTokenizer.from_pretrained(tiny4)
    task = FeatureTagging(FeatureTaggingOptions(scheme="none"))
    # "cats" is not in the vocabulary: cat ##s (2 subtokens); "ok" becomes o ##k
    ex = {"tokens": ["the", "cats", "see", "ok", "dog"], "tags": ["DT", "NN", "VB", "FW", "NN"], "where": "t:1"}
    task.setup({"train": [ex]})
    (row,) = task.encode_all([ex], tok, 32)
    pieces = [tok.convert_ids_to_tokens(row["input_ids"][s:e]) for s, e in row["unit_spans"]]
    assert pieces == [["the"], ["cat", "##s"], ["s", "##e", "##e"], ["o", "##k"], ["dog"]]
    assert row["word_labels"] == [task.labels.index(t) for t in ex["tags"]]
    # 9 subtokens, 6 per window: every word is owned by exactly one window, spans stay whole
    rows = task.encode_all([ex], tok, 8)
    assert len(rows) > 1 and sorted(w for r in rows for w in r["owned_words"]) == [0, 1, 2, 3, 4]
    for r in rows:
        for w, (s, e) in zip(r["owned_words"], r["unit_spans"]):
            assert tok.convert_ids_to_tokens(r["input_ids"][s:e]) == pieces[w]


# ------------------------------------------------------------------------ the cache
def write_tags(path, n, seed):
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(n):
            words = []
            for _ in range(rng.randint(1, 4)):
                words += [(rng.choice(DETS), "DT"), (rng.choice(NOUNS), "NN"), (rng.choice(VERBS), "VB")]
            fh.write(" ".join(f"{w}/{t}" for w, t in words) + "\n")
    return str(path)


@pytest.fixture()
def tag_spec(tiny4, tmp_path):
    """A feature_tagging spec file over small word/TAG files; returns its path."""
    spec = {"task": "feature_tagging", "encoder": {"model": tiny4, "max_length": 16},
            "data": {"format": "wordtag", "train": write_tags(tmp_path / "train.txt", 30, 1),
                     "validation": write_tags(tmp_path / "dev.txt", 10, 2)},
            "task_options": {"scheme": "none", "layers": "last", "cache_dir": str(tmp_path / "cache")},
            "output": str(tmp_path / "run")}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def quiet(msgs):
    return msgs.append


def test_cache_reused_and_invalidated_by_layers_pooling_length_and_data(tag_spec, tmp_path):
    first = extract_features(tag_spec, log=quiet([]))
    assert not first["train"]["reused"] and not first["validation"]["reused"]
    again = extract_features(tag_spec, log=quiet([]))
    assert again["train"]["reused"] and again["train"]["cache"] == first["train"]["cache"]
    folders = {first["train"]["cache"]}
    for override in ("task_options.layers=second_to_last", "task_options.layers=sum_last_four",
                     "task_options.pooling=mean", "encoder.max_length=12", "task_options.cache_dtype=float16"):
        changed = extract_features(tag_spec, [override], log=quiet([]))
        assert not changed["train"]["reused"], override
        folders.add(changed["train"]["cache"])
    assert len(folders) == 6
    # sum and concat of the last four read the same layers: one cache serves both
    concat = extract_features(tag_spec, ["task_options.layers=concat_last_four"], log=quiet([]))
    assert concat["train"]["reused"] and concat["train"]["shape"][1] == 4
    # a changed data file (same name) makes a new cache for that split only
    with open(tmp_path / "train.txt", "a", encoding="utf-8") as fh:
        fh.write("the/DT dog/NN runs/VB\n")
    edited = extract_features(tag_spec, log=quiet([]))
    assert not edited["train"]["reused"] and edited["train"]["cache"] not in folders
    assert edited["validation"]["reused"]


@pytest.mark.parametrize("damage", ["truncate", "flip", "no_manifest"])
def test_torn_or_altered_cache_is_detected_and_rebuilt(tag_spec, damage):
    first = extract_features(tag_spec, log=quiet([]))
    folder = first["train"]["cache"]
    before = fc.open_store(folder, json.load(open(os.path.join(folder, "manifest.json")))["key"]).features.copy()
    path = os.path.join(folder, "features.npy")
    if damage == "truncate":      # a write cut short
        with open(path, "r+b") as fh:
            fh.truncate(os.path.getsize(path) // 2)
    elif damage == "flip":        # same size, different bytes
        with open(path, "r+b") as fh:
            fh.seek(os.path.getsize(path) - 3)
            fh.write(b"\x7f\x7f\x7f")
    else:
        os.remove(os.path.join(folder, "manifest.json"))
    msgs = []
    rebuilt = extract_features(tag_spec, log=quiet(msgs))
    assert not rebuilt["train"]["reused"] and rebuilt["train"]["cache"] == folder
    assert any("is damaged" in m and folder in m for m in msgs), msgs
    key = json.load(open(os.path.join(folder, "manifest.json")))["key"]
    assert (fc.open_store(folder, key).features == before).all()
    assert extract_features(tag_spec, log=quiet([]))["train"]["reused"]


def test_jsonl_export_like_google_extract_features(tag_spec, loaded, tmp_path):
    out = tmp_path / "jsonl"
    stats = extract_features(tag_spec, ["task_options.layers=sum_last_four", "encoder.max_length=8"],
                             jsonl_dir=str(out), log=quiet([]))
    lines = [json.loads(x) for x in open(stats["validation"]["jsonl"], encoding="utf-8")]
    sentences = [[w.rsplit("/", 1)[0] for w in line.split()] for line in open(tmp_path / "dev.txt")]
    assert len(lines) == len(sentences) == 10
    for line, words in zip(lines, sentences):   # windows joined back: one unit per word
        assert [u["token"] for u in line["features"]] == words
        assert [x["index"] for x in line["features"][0]["layers"]] == [-4, -3, -2, -1]
    # a one-window sentence: word k's layer -1 is the last hidden state of its first subtoken
    k = next(i for i, w in enumerate(sentences) if len(w) <= 5)
    batch, hs = by_hand(loaded, [" ".join(sentences[k])])
    values = torch.tensor([u["layers"][3]["values"] for u in lines[k]["features"]])
    assert torch.allclose(values, hs[4][0, 1:1 + len(sentences[k])], atol=2e-6)


def test_ready_feature_specs_load():
    from taskbert.config.spec import load_spec

    root = os.path.join(os.path.dirname(__file__), "..", "..", "task_specs")
    names = sorted(f for f in os.listdir(root) if f.startswith("features-"))
    assert names == ["features-sentiment.yaml", "features-wsj-pos.yaml"]
    for name in names:
        spec = load_spec(os.path.join(root, name))
        assert spec.task in ("feature_classification", "feature_tagging") and spec.options.layers in LAYER_CHOICES


def test_validate_knows_the_layer_choice_needs_more_layers(tmp_path, tiny_encoder):
    """The 2-layer tiny encoder has no 'last four': validate says so from its config, before
    any weights load, as run would."""
    from click.testing import CliRunner

    from taskbert.cli import cli
    from taskbert.testing import write_polarity_data, write_spec

    train = write_polarity_data(tmp_path / "train.jsonl", 20, 1)
    spec = {"task": "feature_classification", "encoder": {"model": tiny_encoder, "max_length": 32},
            "data": {"train": train}, "output": str(tmp_path / "run"),
            "task_options": {"layers": "concat_last_four", "cache_dir": str(tmp_path / "cache")}}
    result = CliRunner().invoke(cli, ["validate", write_spec(spec, str(tmp_path))])
    assert result.exit_code == 2, result.output
    assert "spec.yaml: task_options.layers: 'concat_last_four' needs an encoder with at least 4 layers; " \
           "this one has 2" in result.stderr
    spec["task_options"]["layers"] = "last"
    result = CliRunner().invoke(cli, ["validate", write_spec(spec, str(tmp_path))])
    assert result.exit_code == 0, result.output
