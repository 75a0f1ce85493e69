"""Data parallelism: ``torchrun --nproc_per_node 2 -m taskbert run`` on CPU (gloo) trains
the same model as one process with the same global batch, and only rank 0 writes. That holds
with dropout off (the tiny encoder's and, here, the head's) and in fp32: with dropout each
rank draws its own masks, so the runs are two draws, not one run (docs/reliability.md).

Tolerance: the two runs differ only in the order of float32 sums (DDP adds the ranks'
gradients, one process adds the rows' gradients). After 62 AdamW steps every weight agrees
within 1e-4 (measured: 3e-5) and every logged number within 1e-4 (measured: 4e-7), except
the attention key biases: softmax ignores them, so their exact gradient is zero and what
is left is rounding noise, which Adam scales up to lr-sized steps of either sign in both
runs alike. They are left out of the weight comparison; the outputs do not depend on them.
"""

import json
import os
import socket
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from taskbert.train.distributed import World
from taskbert.run import execute
from taskbert.config.spec import load_spec
from taskbert.testing import NEGATIVE, POSITIVE, write_long_polarity_data, write_polarity_data, write_spec
from taskbert.train.loop import TIMING_FIELDS


def ddp_spec(folder, tiny_encoder, data, **task_options):
    """241 training rows in global batches of 8: the last batch has one row, so rank 1
    gets none of it; 37 validation rows in evaluation batches of 8 (5 batches: 3 + 2)."""
    spec = {"task": "sentence_classification",
            "encoder": {"model": tiny_encoder, "max_length": 24 if task_options else 32},
            "data": {"train": data[0], "validation": data[1]},
            "task_options": {"dropout": 0.0, **task_options},  # ranks draw their own dropout masks
            "train": {"epochs": 2, "batch_size": 8, "eval_batch_size": 8, "lr": 1e-2, "log_every": 5,
                      "eval_every": 10, "seed": 7, "threads": 1, "loggers": [],
                      "precision": "fp32"},  # bf16 (auto on a CPU with AMX) rounds per batch split
            "output": os.path.join(folder, "run")}
    return write_spec(spec, folder)


def records(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as fh:
        return [{k: v for k, v in json.loads(ln).items() if k not in TIMING_FIELDS} for ln in fh if ln.strip()]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, tiny_encoder):
    """(data files, run folder) of the one-process reference run."""
    with open(os.path.join(tiny_encoder, "config.json"), encoding="utf-8") as fh:
        config = json.load(fh)
    # the documented match holds with dropout off: each rank draws its own masks
    assert config["hidden_dropout_prob"] == config["attention_probs_dropout_prob"] == 0.0
    folder = tmp_path_factory.mktemp("ddp")
    data = (write_polarity_data(folder / "train.jsonl", 241, 3),
            write_polarity_data(folder / "dev.jsonl", 37, 4))
    one = load_spec(ddp_spec(str(folder / "one"), tiny_encoder, data))
    final = execute(one)
    assert final["validation/accuracy"] > 0.8  # it learns (chance is about 0.5)
    return data, one.output


def launch(command, folder, tiny_encoder, data, **task_options):
    """Run ``command + [taskbert run spec]`` in a fresh environment; return the run folder."""
    spec = ddp_spec(folder, tiny_encoder, data, **task_options)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    proc = subprocess.run([*command, "-m", "taskbert", "run", spec], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count("done: ") == 1, proc.stdout  # only rank 0 reports
    return os.path.join(folder, "run")


def assert_matches_one_process(run_two, run_one, validation=37):
    """Same weights and metrics within the stated tolerance; rank 0 alone wrote files."""
    w1 = load_file(os.path.join(run_one, "best", "model.safetensors"))
    w2 = load_file(os.path.join(run_two, "best", "model.safetensors"))
    assert w1.keys() == w2.keys()
    compared = [k for k in w1 if not k.endswith("attention.self.key.bias")]
    assert len(compared) > 0.9 * len(w1)
    worst = max(((w1[k] - w2[k]).abs().max().item(), k) for k in compared)
    assert worst[0] < 1e-4, worst

    r1, r2 = records(run_one), records(run_two)
    assert len(r1) == len(r2)  # rank 1 wrote no lines of its own
    for a, b in zip(r1, r2):
        assert a.keys() == b.keys()
        for k in a:
            if isinstance(a[k], float):
                assert b[k] == pytest.approx(a[k], abs=1e-4), (k, a, b)
            else:
                assert a[k] == b[k], (k, a, b)

    # evaluation gathered every row once: nothing padded, nothing counted twice
    with open(os.path.join(run_two, "predictions.jsonl"), encoding="utf-8") as fh:
        preds = [json.loads(ln) for ln in fh]
    assert sorted(p["index"] for p in preds) == list(range(validation))
    assert sorted(os.listdir(run_two)) == sorted(os.listdir(run_one))
    assert not [f for f in os.listdir(run_two) if f.startswith(".")]
    with open(os.path.join(run_two, "manifest.json"), encoding="utf-8") as fh:
        assert json.load(fh)["processes"] == 2


def test_torchrun_two_processes_match_one_with_the_same_global_batch(tmp_path, tiny_encoder, one_process):
    data, run_one = one_process
    run_two = launch([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"],
                     str(tmp_path / "two"), tiny_encoder, data)
    assert_matches_one_process(run_two, run_one)


def test_torchrun_shares_out_whole_documents_of_windows(tmp_path, tiny_encoder):
    """Long texts in windows (3 or 4 a text, batches of up to 8 windows): each rank gets whole
    documents and the loss is weighed by documents, so 2 processes train what 1 does. (Mean
    pooling: attention pooling's zero-initialised scorer gets near-zero gradients at first,
    whose float rounding Adam turns into steps of up to 1e-3 that differ between the runs.)"""
    data = (write_long_polarity_data(tmp_path / "train.jsonl", 41, 3),
            write_long_polarity_data(tmp_path / "dev.jsonl", 13, 4))
    windows = {"long_inputs": "windows", "window_overlap": 4, "window_pooling": "mean"}
    one = load_spec(ddp_spec(str(tmp_path / "one"), tiny_encoder, data, **windows))
    execute(one)
    run_two = launch([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"],
                     str(tmp_path / "two"), tiny_encoder, data, **windows)
    assert_matches_one_process(run_two, one.output, validation=13)


def test_torchrun_trains_several_tasks_as_one_process_does(tmp_path, tiny_encoder):
    """Two tasks (sentiment; whether a text says "the") with gradients accumulated over 2
    batches of either task: every rank draws the same task for each batch, so 2 processes
    train what 1 does, for the shared encoder and both heads. (Both are sentence-level: a
    per-token loss is a mean over each rank's tokens, which DDP averages per rank.)"""
    train, dev = (write_polarity_data(tmp_path / "train.jsonl", 121, 3), write_polarity_data(tmp_path / "dev.jsonl", 21, 4))
    tags = {}
    for split, path in (("train", train), ("dev", dev)):
        with open(path, encoding="utf-8") as fh, open(tmp_path / f"the-{split}.jsonl", "w", encoding="utf-8") as out:
            for line in list(fh)[:80]:
                text = json.loads(line)["text"]
                out.write(json.dumps({"text": text, "label": "the" in text.split()}) + "\n")
        tags[split] = str(tmp_path / f"the-{split}.jsonl")

    def spec(folder):
        return write_spec({
            "encoder": {"model": tiny_encoder, "max_length": 32},
            "tasks": {"sentiment": {"task": "sentence_classification", "task_options": {"dropout": 0.0},
                                    "data": {"train": train, "validation": dev}},
                      "the": {"task": "sentence_classification", "task_options": {"dropout": 0.0},
                              "data": {"train": tags["train"], "validation": tags["dev"]}}},
            "train": {"epochs": 1, "batch_size": 8, "eval_batch_size": 8, "grad_accum": 2, "lr": 1e-2,
                      "log_every": 5, "seed": 7, "threads": 1, "loggers": [], "precision": "fp32",
                      "mixing": "temperature"},
            "output": os.path.join(folder, "run")}, folder)
    one = load_spec(spec(str(tmp_path / "one")))
    execute(one)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "taskbert", "run", spec(str(tmp_path / "two"))], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    for name in ("sentiment", "the"):
        w1 = load_file(os.path.join(one.output, "best", name, "model.safetensors"))
        w2 = load_file(os.path.join(tmp_path, "two", "run", "best", name, "model.safetensors"))
        assert w1.keys() == w2.keys()
        worst = max((w1[k] - w2[k]).abs().max().item() for k in w1 if not k.endswith("attention.self.key.bias"))
        assert worst < 1e-4, (name, worst)
    for a, b in zip(records(one.output), records(os.path.join(tmp_path, "two", "run"))):
        assert a.keys() == b.keys() and all(b[k] == pytest.approx(a[k], abs=1e-4) for k in a if isinstance(a[k], float))


@pytest.mark.skipif(not os.environ.get("TASKBERT_TEST_ACCELERATE"),
                    reason="opt-in, about 45 s more: TASKBERT_TEST_ACCELERATE=1")
def test_accelerate_launch_two_processes_match_one(tmp_path, tiny_encoder, one_process):
    pytest.importorskip("accelerate")
    with socket.socket() as s:  # a free port: the default 29500 may be taken
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data, run_one = one_process
    run_two = launch([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                      "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                      "--main_process_port", str(port)], str(tmp_path / "two"), tiny_encoder, data)
    assert_matches_one_process(run_two, run_one)


def test_batches_are_dealt_out_row_by_row():
    batch = [10, 11, 12, 13, 14]
    assert World(0, 2).shard(batch) == [10, 12, 14]
    assert World(1, 2).shard(batch) == [11, 13]
    assert World(2, 3).shard([1, 2]) == []  # such a rank runs one row with weight 0
    assert World().shard(batch) == batch and not World().enabled and World().is_main
    # weights n_r * W / n: DDP's mean over ranks of weighted rank means is the batch mean
    losses = [0.3, 0.9, 0.6, 0.2, 0.5]
    mean_over_ranks = sum(
        (len(s) * 2 / len(batch)) * (sum(losses[batch.index(i)] for i in s) / len(s))
        for s in (World(0, 2).shard(batch), World(1, 2).shard(batch))) / 2
    assert mean_over_ranks == pytest.approx(sum(losses) / len(losses))
