"""Several tasks on one encoder (a spec's ``tasks:``): sentiment (sentence_classification)
and names (token_classification) learn together on a tiny BERT; one set of encoder weights;
per-task metrics, predictions and model folders; the mixing strategies; exact resume."""

import json
import os
import random
from collections import Counter

import pytest
from click.testing import CliRunner
from safetensors.torch import load_file

from taskbert.cli import cli
from taskbert.data.batching import mix_parts
from taskbert.errors import TaskbertError
from taskbert.testing import NAMES, TINY_WORDS, crash_at, make_tiny_encoder, run_spec, write_polarity_data
from taskbert.train.checkpoint import TASK_FILE

PEOPLE, PLACES = ["alice", "bob"], ["paris", "london"]
FILLER = "went to in lives works at the and it".split()


def write_names(path, n, seed):
    """``n`` jsonl sentences with a per-word tag: per, loc or O."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(n):
            tokens, tags = [], []
            for _ in range(rng.randint(3, 8)):
                r = rng.random()
                word, tag = ((rng.choice(PEOPLE), "per") if r < 0.2 else (rng.choice(PLACES), "loc") if r < 0.4
                             else (rng.choice(FILLER), "O"))
                tokens.append(word), tags.append(tag)
            fh.write(json.dumps({"tokens": tokens, "tags": tags}) + "\n")
    return str(path)


def read_jsonl(path):
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def multitask_spec(root, **train):
    encoder = make_tiny_encoder(str(root / "encoder"), TINY_WORDS + NAMES)
    return {
        "encoder": {"model": encoder, "max_length": 24},
        "tasks": {
            "sentiment": {"task": "sentence_classification",
                          "data": {"train": write_polarity_data(str(root / "s_train.jsonl"), 240, 1),
                                   "validation": write_polarity_data(str(root / "s_dev.jsonl"), 60, 2)}},
            "names": {"task": "token_classification", "task_options": {"scheme": "none"}, "weight": 0.5,
                      "data": {"train": write_names(root / "n_train.jsonl", 160, 3),
                               "validation": write_names(root / "n_dev.jsonl", 40, 4)}},
        },
        "train": {"epochs": 3, "batch_size": 16, "lr": 3e-3, "seed": 5, "log_every": 5, **train},
        "output": str(root / "run"),
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("multitask")
    spec = multitask_spec(root)
    metrics, run_dir = run_spec(spec, str(root))
    return spec, metrics, run_dir, root


def test_each_task_learns_and_the_mean_picks_the_best(trained):
    _, metrics, run_dir, _ = trained
    assert metrics["validation/sentiment/accuracy"] >= 0.85          # chance: about 0.5
    assert metrics["validation/names/accuracy"] >= 0.9               # all-O: about 0.6
    mean = (metrics["validation/sentiment/accuracy"] + metrics["validation/names/accuracy"]) / 2
    assert metrics["validation/mean"] == pytest.approx(mean)
    history = read_jsonl(os.path.join(run_dir, "metrics.jsonl"))
    losses = [h["train/loss"] for h in history if "train/loss" in h]
    assert losses[-1] < 0.6 * losses[0], losses
    best = json.load(open(os.path.join(run_dir, "best", "multitask.json")))
    assert best["tasks"] == {"sentiment": "sentence_classification", "names": "token_classification"}
    assert best["metric"] == "validation/mean"


def test_one_encoder_and_a_model_folder_per_task(trained):
    _, _, run_dir, _ = trained
    best = os.path.join(run_dir, "best")
    a = load_file(os.path.join(best, "sentiment", "model.safetensors"))
    b = load_file(os.path.join(best, "names", "model.safetensors"))
    shared = [k for k in a if k.startswith("bert.") and "pooler" not in k]
    assert "bert.pooler.dense.weight" in a and not [k for k in b if "pooler" in k]   # as BertFor* have them
    assert shared and all((a[k] == b[k]).all() for k in shared)     # the same encoder weights
    assert a["classifier.weight"].shape[0] == 2 and b["classifier.weight"].shape[0] == 3   # own heads
    (step,) = [d for d in sorted(os.listdir(os.path.join(run_dir, "checkpoint")))][-1:]
    state = load_file(os.path.join(run_dir, "checkpoint", step, "model.safetensors"))
    assert [k for k in state if "word_embeddings" in k] == ["bert.embeddings.word_embeddings.weight"]   # one encoder
    assert {k for k in state if "classifier.weight" in k} == {"heads.sentiment.classifier.weight", "heads.names.classifier.weight"}
    assert json.load(open(os.path.join(best, "names", TASK_FILE)))["task"] == "token_classification"


def test_best_task_folders_load_in_plain_transformers(trained):
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    _, _, run_dir, _ = trained
    for sub, auto in (("sentiment", AutoModelForSequenceClassification), ("names", AutoModelForTokenClassification)):
        model, info = auto.from_pretrained(os.path.join(run_dir, "best", sub), output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"], (sub, info)
    cls = AutoModelForSequenceClassification.from_pretrained(os.path.join(run_dir, "best", "sentiment"))
    assert cls.config.id2label == {0: "neg", 1: "pos"}


def test_predictions_and_predict_with_task(trained, tmp_path):
    _, _, run_dir, root = trained
    preds = read_jsonl(os.path.join(run_dir, "predictions.jsonl"))
    assert Counter(p["task"] for p in preds) == {"sentiment": 60, "names": 40}
    assert all(len(p["tags"]) == len(p["gold"]) for p in preds if p["task"] == "names")
    src = tmp_path / "in.txt"
    src.write_text("alice went to paris\nthe film was awful\n")
    runner = CliRunner()
    no_task = runner.invoke(cli, ["predict", run_dir, str(src)])
    assert no_task.exit_code == 2 and "pass --task NAME" in no_task.output and "names (token_classification)" in no_task.output
    bad = runner.invoke(cli, ["predict", run_dir, str(src), "--task", "nope"])
    assert bad.exit_code == 2 and "'nope' is not a task of" in bad.output
    out = runner.invoke(cli, ["predict", run_dir, str(src), "--task", "names", "--format", "text"])
    assert out.exit_code == 0, out.output
    rows = [json.loads(line) for line in out.output.splitlines() if line.startswith("{")]
    assert rows[0]["tags"][0] == "per" and rows[0]["tags"][3] == "loc"
    for name, data in (("sentiment", "s_dev.jsonl"), ("names", "n_dev.jsonl")):   # as the run predicted
        out = runner.invoke(cli, ["predict", run_dir, str(root / data), "--task", name])
        assert out.exit_code == 0, out.output
        rows = [json.loads(line) for line in out.output.splitlines() if line.startswith("{")]
        key = "label" if name == "sentiment" else "tags"
        assert [r[key] for r in rows] == [p[key] for p in preds if p["task"] == name]


def test_mixing_strategies_draw_tasks_as_documented():
    lengths = [5] * 400 + [5] * 100            # part 0: 400 rows, part 1: 100 rows
    parts = [0] * 400 + [1] * 100
    def shares(strategy, temperature=2.0, epoch=0):
        batches = mix_parts(lengths, 10, 3, epoch, None, parts, strategy, temperature)
        assert all(len({parts[i] for i in b}) == 1 for b in batches)      # never mixed
        assert len(batches) == 50                                           # 40 + 10 batches
        return Counter(parts[b[0]] for b in batches), batches
    counts, batches = shares("proportional")
    assert counts == {0: 40, 1: 10}
    assert sorted(i for b in batches for i in b) == list(range(500))         # each row once
    counts, batches = shares("round_robin")
    assert counts == {0: 25, 1: 25} and [parts[b[0]] for b in batches[:4]] == [0, 1, 0, 1]
    counts, _ = shares("temperature", temperature=1000.0)                    # nearly uniform
    assert 15 <= counts[1] <= 35
    counts, _ = shares("temperature", temperature=1.0)                       # like proportional
    assert counts[1] <= 20
    assert shares("temperature", epoch=1)[1] == shares("temperature", epoch=1)[1]   # pure function
    assert shares("proportional", epoch=1)[1] != shares("proportional", epoch=2)[1]


def test_resume_is_bit_identical(tmp_path):
    spec = multitask_spec(tmp_path, epochs=1, save_every=4, mixing="temperature")
    spec["encoder"]["max_length"] = 24
    full_metrics, run_dir = run_spec(spec, str(tmp_path / "a"))
    spec["output"] = str(tmp_path / "b" / "run")
    with pytest.raises(Exception), crash_at(10):
        run_spec(spec, str(tmp_path / "b"))
    from taskbert.config.spec import load_spec
    from taskbert.run import execute
    resumed = execute(load_spec(str(tmp_path / "b" / "spec.yaml")), resume=True)
    strip = lambda m: {k: v for k, v in m.items() if k not in ("samples_per_s", "tokens_per_s")}
    assert strip(resumed) == strip(full_metrics)
    a = [strip(m) for m in read_jsonl(os.path.join(run_dir, "metrics.jsonl"))]
    b = [strip(m) for m in read_jsonl(os.path.join(spec["output"], "metrics.jsonl"))]
    assert a == b


@pytest.mark.parametrize("change, message", [
    (lambda s: s.update(task="sentence_classification"), "a spec with tasks: gives each task its own"),
    (lambda s: s["tasks"].pop("names"), "at least two named tasks"),
    (lambda s: s["tasks"]["names"].update(task="nope"), "tasks.names.task"),
    (lambda s: s["tasks"]["names"].update(task_options={"schema": "none"}), "tasks.names.task_options.schema"),
    (lambda s: s["tasks"].update({"9bad": s["tasks"]["names"]}), "'9bad' is not a task name"),
    (lambda s: s["train"].update(metric="validation/names/acuracy"), "is not a validation metric"),
    (lambda s: s["tasks"]["names"].update(task="feature_classification", task_options={}),
     "tasks.names: task 'feature_classification' keeps the encoder frozen"),
    (lambda s: s["train"].update(mixing="sometimes"), "train.mixing"),
])
def test_bad_multitask_specs_are_one_line(tmp_path, change, message):
    from taskbert.config.spec import spec_from_dict
    from taskbert.run import prepare

    spec = multitask_spec(tmp_path)
    change(spec)
    with pytest.raises(TaskbertError) as err:
        prepare(spec_from_dict(spec, str(tmp_path / "spec.yaml")))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_report_draws_a_confusion_matrix_per_task(trained):
    from taskbert.cli.report import write_report

    _, _, run_dir, _ = trained
    result = write_report(run_dir)
    assert set(result["confusion"]) == {"sentiment-validation", "names-validation"}
    assert result["confusion"]["names-validation"][0] == ["O", "loc", "per"]


def test_a_single_task_spec_refuses_mixing(tmp_path):
    from taskbert.config.spec import spec_from_dict

    spec = {"task": "sentence_classification", "data": {"train": "t.jsonl"}, "train": {"mixing": "round_robin"}}
    with pytest.raises(TaskbertError, match="train.mixing: only for a spec with several tasks"):
        spec_from_dict(spec, str(tmp_path / "spec.yaml"))
    spec["train"] = {"mixing": "proportional", "mixing_temperature": 2.0}   # the defaults, as spec.yaml has them
    assert spec_from_dict(spec, str(tmp_path / "spec.yaml")).tasks is None


def test_serve_routes_each_request_to_its_task(trained):
    pytest.importorskip("uvicorn")
    import http.client

    from taskbert.cli.serve import start_server

    _, _, run_dir, root = trained
    preds = read_jsonl(os.path.join(run_dir, "predictions.jsonl"))

    def post(address, body):
        conn = http.client.HTTPConnection(*address, timeout=30)
        conn.request("POST", "/predict", body=json.dumps(body), headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        out = resp.status, json.loads(resp.read())
        conn.close()
        return out

    server = start_server(run_dir)
    try:
        texts = [json.loads(line) for line in open(root / "s_dev.jsonl")][:5]
        words = [json.loads(line) for line in open(root / "n_dev.jsonl")][:5]
        status, out = post(server.address, {"task": "sentiment", "inputs": texts})
        assert status == 200 and [p["label"] for p in out["predictions"]] == [
            p["label"] for p in preds if p["task"] == "sentiment"][:5]
        status, out = post(server.address, {"task": "names", "inputs": words})
        assert status == 200 and [p["tags"] for p in out["predictions"]] == [
            p["tags"] for p in preds if p["task"] == "names"][:5]
        status, out = post(server.address, {"inputs": ["alice went to paris"]})
        assert status == 400 and out["error"].startswith("task: missing;") and "sentiment, names" in out["error"]
        status, out = post(server.address, {"task": "nope", "inputs": ["x"]})
        assert status == 400 and "'nope' is not a task of this run" in out["error"]
        conn = http.client.HTTPConnection(*server.address, timeout=30)
        conn.request("GET", "/health")
        assert json.loads(conn.getresponse().read())["tasks"] == ["sentiment", "names"]
    finally:
        server.stop()
    one = start_server(os.path.join(run_dir, "best", "names"))   # one task's folder: a plain server
    try:
        status, out = post(one.address, {"inputs": [words[0]]})
        assert status == 200 and out["predictions"][0]["tags"] == [p["tags"] for p in preds if p["task"] == "names"][0]
    finally:
        one.stop()
