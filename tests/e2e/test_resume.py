"""Exact resume: a run killed at any step and continued with ``taskbert run --resume``
ends bit-identical to a run that was never interrupted.

Compared: the weights of ``best/`` and of the newest checkpoint (file bytes),
``predictions.jsonl`` (bytes) and ``metrics.jsonl`` line by line without the
``TIMING_FIELDS`` (``samples_per_s``, ``tokens_per_s``: they measure this machine's
wall-clock speed, which no resume can reproduce). The spec uses head dropout, gradient
accumulation, a logging window that straddles checkpoints and the csv logger, so the
dropout RNG, the batch position and the window must all come back exactly.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from taskbert.train import checkpoint as ckpt
from taskbert.run import execute
from taskbert.config.spec import load_spec
from taskbert.testing import Crash, crash_at, write_polarity_data, write_spec
from taskbert.train.loop import TIMING_FIELDS


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Train and validation files shared by every run in this module."""
    folder = tmp_path_factory.mktemp("resume-data")
    return (write_polarity_data(folder / "train.jsonl", 240, 1),
            write_polarity_data(folder / "dev.jsonl", 37, 2))


def resume_spec(folder, tiny_encoder, data, **train):
    """A 45-step run: checkpoints every 3 steps, a log line every 4, evaluation every 10."""
    spec = {
        "task": "sentence_classification",
        "encoder": {"model": tiny_encoder, "max_length": 32},
        "data": {"train": data[0], "validation": data[1]},
        "task_options": {"dropout": 0.2},  # drawn from the torch RNG: resume must restore it
        "train": {"epochs": 3, "batch_size": 8, "grad_accum": 2, "lr": 2e-2, "warmup": 0.1,
                  "log_every": 4, "eval_every": 10, "save_every": 3, "seed": 5, "threads": 1,
                  "loggers": ["csv"], **train},
        "output": os.path.join(folder, "run"),
    }
    return write_spec(spec, folder)


def metrics_without_timing(run_dir):
    """metrics.jsonl records minus the wall-clock fields."""
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as fh:
        return [{k: v for k, v in json.loads(line).items() if k not in TIMING_FIELDS}
                for line in fh if line.strip()]


def read_bytes(path):
    with open(path, "rb") as fh:
        return fh.read()


def assert_same_run(got, want, context=""):
    """Weights, predictions and metrics of two run folders are identical."""
    assert read_bytes(os.path.join(got, "best", "model.safetensors")) == \
        read_bytes(os.path.join(want, "best", "model.safetensors")), f"best/ weights differ {context}"
    newest_got = ckpt.latest_checkpoint(os.path.join(got, "checkpoint"))[0]
    newest_want = ckpt.latest_checkpoint(os.path.join(want, "checkpoint"))[0]
    assert os.path.basename(newest_got) == os.path.basename(newest_want)
    assert read_bytes(os.path.join(newest_got, "model.safetensors")) == \
        read_bytes(os.path.join(newest_want, "model.safetensors")), f"checkpoint weights differ {context}"
    assert read_bytes(os.path.join(got, "predictions.jsonl")) == \
        read_bytes(os.path.join(want, "predictions.jsonl")), f"predictions differ {context}"
    got_m, want_m = metrics_without_timing(got), metrics_without_timing(want)
    assert len(got_m) == len(want_m), (context, len(got_m), len(want_m))
    for i, (a, b) in enumerate(zip(got_m, want_m)):
        assert a == b, f"metrics.jsonl line {i + 1} differs {context}: {a} != {b}"
    with open(os.path.join(got, "metrics.csv"), encoding="utf-8") as fh:  # rebuilt from history
        assert sum(1 for _ in fh) == len(want_m) + 1
    leftovers = [n for n in os.listdir(got) + os.listdir(os.path.join(got, "checkpoint")) if n.startswith(".")]
    assert not leftovers, f"temporary files left behind {context}: {leftovers}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_encoder, data):
    """The uninterrupted run (in this process; one torch thread, as in the subprocesses)."""
    spec = load_spec(resume_spec(str(tmp_path_factory.mktemp("reference")), tiny_encoder, data))
    final = execute(spec)
    assert final["validation/accuracy"] > 0.8  # it learns: chance is about 0.5
    return spec.output


def test_sigkill_at_a_random_step_then_resume_is_bit_identical(tmp_path, tiny_encoder, data, reference):
    path = resume_spec(str(tmp_path / "killed"), tiny_encoder, data)
    run_dir = os.path.join(os.path.dirname(path), "run")
    lines_total = len(metrics_without_timing(reference))
    kill_at = random.randint(1, lines_total - 4)  # metrics lines seen before SIGKILL
    extra_delay = random.uniform(0, 0.05)         # sometimes lands inside a checkpoint write
    context = f"(killed after {kill_at} metrics lines + {extra_delay:.3f}s)"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.Popen([sys.executable, "-m", "taskbert", "run", path], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    metrics = os.path.join(run_dir, "metrics.jsonl")
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if os.path.exists(metrics) and sum(1 for _ in open(metrics, encoding="utf-8")) >= kill_at:
            time.sleep(extra_delay)
            break
        time.sleep(0.003)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, (context, proc.returncode, proc.stderr.read()[-2000:])
    killed_lines = len(metrics_without_timing(run_dir))
    assert killed_lines < lines_total, context

    resumed = subprocess.run([sys.executable, "-m", "taskbert", "run", path, "--resume"], env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, (context, resumed.stderr[-3000:])
    assert "resumed from" in resumed.stdout + resumed.stderr
    assert_same_run(run_dir, reference, context)


@pytest.mark.parametrize("crash_step", [12, 20])
def test_crash_between_log_line_and_checkpoint_then_resume(tmp_path, tiny_encoder, data, reference,
                                                           crash_step):
    """Step 12 logs mid-epoch between checkpoints (9 and 12); at step 20 the run dies after
    the evaluation line and before that step's checkpoint, so the resumed run must drop
    lines from metrics.jsonl and evaluate again."""
    spec = load_spec(resume_spec(str(tmp_path / "crash"), tiny_encoder, data))
    with crash_at(crash_step), pytest.raises(Crash):
        execute(spec)
    execute(spec, resume=True)
    assert_same_run(spec.output, reference, f"(crash at step {crash_step})")


def test_resume_advice_after_set_leads_to_the_same_run(tmp_path, tiny_encoder, data, reference):
    """A run started with --set, resumed without it, is refused with advice; each way it
    offers (the same --set, or the run's own spec.yaml) resumes to the uninterrupted run."""
    from click.testing import CliRunner

    from taskbert.cli import cli

    spec_file = resume_spec(str(tmp_path), tiny_encoder, data, lr=1e-3)   # the spec says 1e-3
    original = load_spec(spec_file, ["train.lr=0.02"])                   # the run used 0.02
    with crash_at(20), pytest.raises(Crash):
        execute(original)
    refused = CliRunner().invoke(cli, ["run", spec_file, "--resume"])
    assert refused.exit_code == 2
    message = refused.output.strip().splitlines()[-1]
    saved = os.path.join(original.output, "spec.yaml")
    assert "pass --set train.lr=0.02 as the run did" in message and saved in message, message
    resumed = CliRunner().invoke(cli, ["run", saved, "--resume"])    # the run's own copy
    assert resumed.exit_code == 0, resumed.output
    assert_same_run(original.output, reference, "(resumed with the run's own spec)")
    with crash_at(20), pytest.raises(Crash):
        execute(original, overwrite=True)
    with_set = CliRunner().invoke(cli, ["run", spec_file, "--resume", "--set", "train.lr=0.02"])
    assert with_set.exit_code == 0, with_set.output
    assert_same_run(original.output, reference, "(resumed with the same --set)")


def test_resume_before_the_first_complete_checkpoint_starts_afresh(tmp_path, tiny_encoder, data, reference):
    """A run killed before its first checkpoint was complete (here: step 3's manifest never
    written) has nothing to continue: --resume says so in one note on stderr and trains
    from step 0, ending as the uninterrupted run does."""
    from click.testing import CliRunner

    from taskbert.cli import cli

    spec_file = resume_spec(str(tmp_path), tiny_encoder, data)
    spec = load_spec(spec_file)
    with crash_at(4), pytest.raises(Crash):
        execute(spec)
    root = os.path.join(spec.output, "checkpoint")
    for _, folder in ckpt.list_checkpoints(root):
        os.remove(os.path.join(folder, ckpt.MANIFEST))
    result = CliRunner().invoke(cli, ["run", spec_file, "--resume"])
    assert result.exit_code == 0, result.output
    notes = [ln for ln in result.stderr.splitlines() if ln.startswith("note: --resume")]
    assert notes == [f"note: --resume: {spec.output} holds no complete checkpoint (step-00000003: no "
                     f"manifest.json (the write did not finish)); starting the run again from step 0"], result.stderr
    assert "resumed from" not in result.stderr
    assert_same_run(spec.output, reference, "(resumed with no complete checkpoint)")


def test_a_run_with_deferred_checks_resumes_bit_identical(tmp_path, tiny_encoder, data, monkeypatch):
    """With the checks a GPU defers (forced here on a CPU: scaling.defers), the loss read back
    at log and save steps still resumes exactly: the window is read before each checkpoint.
    Crash at step 16, after its log line: the resumed run starts from the checkpoint of step
    15, whose window (steps 13-15) was read back from the device at that save."""
    from taskbert.train import scaling

    monkeypatch.setattr(scaling, "defers", lambda *a: True)
    want = load_spec(resume_spec(str(tmp_path / "deferred"), tiny_encoder, data))
    execute(want)
    spec = load_spec(resume_spec(str(tmp_path / "crash"), tiny_encoder, data))
    with crash_at(16), pytest.raises(Crash):
        execute(spec)
    execute(spec, resume=True)
    assert_same_run(spec.output, want.output, "(deferred checks, crash at step 16)")
