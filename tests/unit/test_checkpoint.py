"""Checkpoints: complete or absent, the newest two kept, a damaged newest one skipped for
the one before it, files that hold code refused, and a NaN loss stopping the run with the
last good checkpoint kept."""

import errno
import json
import math
import os
import shutil

import pytest
import torch
import yaml
from click.testing import CliRunner
from safetensors import SafetensorError
from safetensors.torch import load_file

from taskbert import io as tio
from taskbert.train import checkpoint as ckpt
from taskbert.cli import cli
from taskbert.data.splits import file_sha256
from taskbert.run import execute
from taskbert.config.spec import load_spec
from taskbert.testing import write_polarity_data
from taskbert.train.loop import TIMING_FIELDS


def write_spec(folder, tiny_encoder, train_file, output, **train):
    """A 30-step run (120 rows, batch 8, 2 epochs) with a checkpoint every 3 steps."""
    os.makedirs(folder, exist_ok=True)
    spec = {"task": "sentence_classification",
            "encoder": {"model": tiny_encoder, "max_length": 32},
            "data": {"train": train_file, "validation": train_file},
            "task_options": {"dropout": 0.1},
            "train": {"epochs": 2, "batch_size": 8, "lr": 1e-2, "log_every": 5, "eval_every": 10,
                      "save_every": 3, "seed": 11, "threads": 1, "loggers": [], **train},
            "output": output}
    path = os.path.join(folder, "spec.yaml")
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(spec, fh)
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_encoder):
    """(spec path, run folder) of one finished run, shared by the tests that copy it."""
    folder = tmp_path_factory.mktemp("finished")
    train = write_polarity_data(folder / "train.jsonl", 120, 4)
    path = write_spec(str(folder), tiny_encoder, train, str(folder / "run"))
    execute(load_spec(path))
    return path, str(folder / "run")


def copy_run(finished, tmp_path):
    """A copy of the finished run and a spec whose output points at it."""
    spec_path, run_dir = finished
    copy = str(tmp_path / "copy")
    shutil.copytree(run_dir, copy)
    with open(spec_path, encoding="utf-8") as fh:
        spec = yaml.safe_load(fh)
    spec["output"] = copy
    path = str(tmp_path / "spec.yaml")
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(spec, fh)
    return path, copy


def metrics_without_timing(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as fh:
        return [{k: v for k, v in json.loads(ln).items() if k not in TIMING_FIELDS} for ln in fh if ln.strip()]


def test_newest_two_complete_checkpoints_are_kept(finished):
    _, run_dir = finished
    root = os.path.join(run_dir, "checkpoint")
    assert [s for s, _ in ckpt.list_checkpoints(root)] == [30, 27]
    assert sorted(os.listdir(root)) == ["step-00000027", "step-00000030"]  # no leftovers
    for _, folder in ckpt.list_checkpoints(root):
        assert ckpt.verify_checkpoint(folder) is None
        with open(os.path.join(folder, "trainer_state.json"), encoding="utf-8") as fh:
            state = json.load(fh)
        assert {"step", "epoch", "batch_pos", "stale", "window", "best_value", "metrics_lines"} <= set(state)
        blob = ckpt.safe_torch_load(os.path.join(folder, "optimizer.pt"))
        assert {"optimizer", "scheduler", "rng"} <= set(blob)
        assert {"python", "numpy", "torch"} <= set(blob["rng"][0])


def test_truncated_newest_checkpoint_is_skipped_for_the_previous_one(finished, tmp_path):
    path, copy = copy_run(finished, tmp_path)
    root = os.path.join(copy, "checkpoint")
    newest = ckpt.step_folder(root, 30)
    weights = os.path.join(newest, "model.safetensors")
    size = os.path.getsize(weights)
    with open(weights, "r+b") as fh:
        fh.truncate(size // 2)
    folder, skipped = ckpt.latest_checkpoint(root)
    assert folder == ckpt.step_folder(root, 27)
    assert skipped == [(newest, f"model.safetensors is {size // 2} bytes, manifest.json says {size}")]

    result = CliRunner().invoke(cli, ["run", path, "--resume"])
    assert result.exit_code == 0, result.output
    # the warning is on stderr (where the README says), not mixed into stdout
    assert f"warning: skipping checkpoint {newest}: model.safetensors is {size // 2} bytes" in result.stderr
    assert "resumed from" in result.stderr and "step-00000027" in result.stderr
    # replaying steps 28-30 from step 27 gives back exactly the lost checkpoint and results
    _, run_dir = finished
    assert ckpt.verify_checkpoint(newest) is None
    for name in ("model.safetensors",):
        with open(os.path.join(newest, name), "rb") as a, \
                open(os.path.join(ckpt.step_folder(os.path.join(run_dir, "checkpoint"), 30), name), "rb") as b:
            assert a.read() == b.read()
    assert metrics_without_timing(copy) == metrics_without_timing(run_dir)
    with open(os.path.join(copy, "predictions.jsonl"), "rb") as a, \
            open(os.path.join(run_dir, "predictions.jsonl"), "rb") as b:
        assert a.read() == b.read()


def test_verify_names_what_is_wrong(finished, tmp_path):
    _, run_dir = finished
    source = ckpt.step_folder(os.path.join(run_dir, "checkpoint"), 27)
    cases = {
        "no manifest.json (the write did not finish)": lambda f: os.unlink(os.path.join(f, "manifest.json")),
        "optimizer.pt is missing": lambda f: os.unlink(os.path.join(f, "optimizer.pt")),
        "trainer_state.json does not match its SHA-256 in manifest.json":
            lambda f: _flip_byte(os.path.join(f, "trainer_state.json")),
    }
    for i, (reason, damage) in enumerate(cases.items()):
        folder = str(tmp_path / f"step-{i:08d}")
        shutil.copytree(source, folder)
        assert ckpt.verify_checkpoint(folder) is None
        damage(folder)
        assert ckpt.verify_checkpoint(folder) == reason


def _flip_byte(path):
    with open(path, "r+b") as fh:
        first = fh.read(1)
        fh.seek(0)
        fh.write(bytes([first[0] ^ 1]))


def test_checkpoint_that_holds_code_is_refused(finished, tmp_path):
    """A stranger's optimizer.pt with a pickled callable (and a manifest to match) is
    refused with one line; the callable never runs."""
    path, copy = copy_run(finished, tmp_path)
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return (os.makedirs, (str(marker),))

    newest = ckpt.step_folder(os.path.join(copy, "checkpoint"), 30)
    torch.save({"optimizer": Payload(), "scheduler": {}, "rng": []}, os.path.join(newest, "optimizer.pt"))
    manifest = os.path.join(newest, "manifest.json")
    with open(manifest, encoding="utf-8") as fh:
        info = json.load(fh)
    file = os.path.join(newest, "optimizer.pt")
    info["files"]["optimizer.pt"] = {"bytes": os.path.getsize(file), "sha256": file_sha256(file)}
    with open(manifest, "w", encoding="utf-8") as fh:
        json.dump(info, fh)
    result = CliRunner().invoke(cli, ["run", path, "--resume"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "optimizer.pt: refused to load" in lines[0], lines
    assert "Traceback" not in result.output
    assert not marker.exists()


def test_a_plain_pickle_is_refused_without_warnings(tmp_path):
    """A plain ``pickle.dump`` (protocol 4) makes torch's safe unpickler warn; the refusal is
    still the only thing said, and the pickled call never runs."""
    import pickle
    import warnings

    from taskbert import DataError

    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return (os.makedirs, (str(marker),))

    file = tmp_path / "optimizer.pt"
    with open(file, "wb") as fh:
        pickle.dump({"optimizer": Payload()}, fh, protocol=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(DataError, match="optimizer.pt: refused to load"):
            ckpt.safe_torch_load(str(file))
    assert [str(w.message) for w in caught] == []
    assert not marker.exists()


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path, tiny_encoder):
    train = write_polarity_data(tmp_path / "train.jsonl", 120, 4)
    path = write_spec(str(tmp_path), tiny_encoder, train, str(tmp_path / "run"),
                      lr=1e12, warmup=0, save_every=1, log_every=1)
    result = CliRunner().invoke(cli, ["run", path])
    assert result.exit_code == 1, result.output
    # one error line (on a CPU with bf16 units a "precision: auto trains in bf16" note precedes it)
    lines = [ln for ln in result.stderr.strip().splitlines() if not ln.startswith("precision: auto ")]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: train/loss is nan at step 2 (epoch 1)"), lines
    assert "last good checkpoint (step-00000001) is kept" in lines[0]
    root = str(tmp_path / "run" / "checkpoint")
    assert [s for s, _ in ckpt.list_checkpoints(root)] == [1]
    assert ckpt.verify_checkpoint(ckpt.step_folder(root, 1)) is None
    weights = load_file(os.path.join(ckpt.step_folder(root, 1), "model.safetensors"))
    assert all(torch.isfinite(t).all() for t in weights.values())
    records = metrics_without_timing(str(tmp_path / "run"))
    assert [r["step"] for r in records] == [1]  # the NaN step logged nothing
    assert all(math.isfinite(v) for v in records[0].values() if isinstance(v, float))


def _full_after(n, exc):
    """A stand-in for a write function that works ``n`` times, then raises ``exc``."""
    def fake(real):
        calls = []

        def write(*args, **kwargs):
            calls.append(1)
            if len(calls) > n:
                raise exc
            return real(*args, **kwargs)
        return write
    return fake


@pytest.mark.parametrize("target,calls,exc,file,kept", [
    # torch.save of the second checkpoint (step 6) hits ENOSPC
    ("torch.save", 1, OSError(errno.ENOSPC, "No space left on device"), "checkpoint/step-00000006/optimizer.pt",
     "step-00000003"),
    # safetensors (which wraps the OS error in its own) fails on best/ at the first evaluation, step 10
    ("save_weights", 3, SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"),
     "best/model.safetensors", "step-00000009"),
], ids=["checkpoint-enospc", "best-safetensors"])
def test_disk_full_is_one_line_and_keeps_the_last_checkpoint(tmp_path, tiny_encoder, monkeypatch,
                                                              target, calls, exc, file, kept):
    train = write_polarity_data(tmp_path / "train.jsonl", 120, 4)
    run = tmp_path / "run"
    path = write_spec(str(tmp_path), tiny_encoder, train, str(run))
    if target == "torch.save":
        monkeypatch.setattr(ckpt.torch, "save", _full_after(calls, exc)(torch.save))
    else:
        monkeypatch.setattr(ckpt, "save_weights", _full_after(calls, exc)(ckpt.save_weights))
    result = CliRunner().invoke(cli, ["run", path])
    assert result.exit_code == 1, result.output
    lines = [ln for ln in result.stderr.strip().splitlines() if not ln.startswith("precision: auto ")]
    assert lines == [f"error: no space left on the device while writing {run / file}; the last complete "
                     f"checkpoint ({kept}) is kept in {run / 'checkpoint'}; free some space, then continue "
                     f"with --resume"], lines
    assert "Traceback" not in result.output
    root = str(run / "checkpoint")
    assert ckpt.latest_checkpoint(root) == (os.path.join(root, kept), [])
    assert not [n for n in os.listdir(root) + os.listdir(run) if ".tmp-" in n]   # nothing half-written
    monkeypatch.undo()
    resumed = CliRunner().invoke(cli, ["run", path, "--resume"])
    assert resumed.exit_code == 0, resumed.output


def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "metrics.jsonl"
    tio.atomic_write(str(target), "old\n")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt.os, "replace", broken_replace)
    with pytest.raises(OSError):
        tio.atomic_write(str(target), "new\n")
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["metrics.jsonl"]  # the temporary file is gone


def test_a_folder_swap_cut_short_is_undone(tmp_path):
    best = tmp_path / "best"
    (tmp_path / "best.old").mkdir()
    (tmp_path / "best.old" / "model.safetensors").write_bytes(b"weights")
    assert tio.recover_folder(str(best)) is True  # crashed between the two renames
    assert (best / "model.safetensors").read_bytes() == b"weights"
    (tmp_path / "best.old").mkdir()
    assert tio.recover_folder(str(best)) is False  # both present: the .old is stale
    assert not (tmp_path / "best.old").exists() and best.exists()


@pytest.mark.parametrize("setting, chosen, said", [("auto", torch.bfloat16, True), ("auto", None, False),
                                                   ("bf16", torch.bfloat16, False)])
def test_run_says_when_precision_auto_picks_low_precision(tmp_path, tiny_encoder, monkeypatch, setting, chosen, said):
    import taskbert.train.loop as trainer_module

    monkeypatch.setattr(trainer_module, "pick_precision", lambda s, device: chosen)
    train = write_polarity_data(tmp_path / "train.jsonl", 16, 4)
    path = write_spec(str(tmp_path), tiny_encoder, train, str(tmp_path / "run"), max_steps=1,
                      precision=setting, save_every=None)
    result = CliRunner().invoke(cli, ["run", path])
    assert result.exit_code == 0, result.output
    notes = [ln for ln in result.stderr.splitlines() if ln.startswith("precision: auto trains in bfloat16")]
    assert len(notes) == int(said), result.stderr
