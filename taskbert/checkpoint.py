"""Files that survive a crash: atomic writes, model folders, resumable checkpoints.

Every file is written to a temporary name, flushed, fsynced and renamed, so it is either
complete or absent. Folders (``best/``, ``checkpoint/``) are built under a temporary name
and swapped in by rename, so a reader never sees half a model.
"""

import json
import os
import shutil
import tempfile

import torch
from safetensors.torch import load_file, save_file

MODEL_FILE = "model.safetensors"
TASK_FILE = "taskbert.json"


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path, data, mode="w"):
    """Write text or bytes to ``path`` atomically (temp file, fsync, rename)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, mode + ("b" if isinstance(data, bytes) else ""),
                       **({} if isinstance(data, bytes) else {"encoding": "utf-8"})) as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(folder)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_json(path, obj):
    """Write ``obj`` as indented JSON atomically."""
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def fsync_tree(folder):
    """fsync every file in a folder (before it is renamed into place)."""
    for root, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(root)


def swap_in(tmp_folder, final_folder):
    """Replace ``final_folder`` by the complete ``tmp_folder`` (two renames)."""
    fsync_tree(tmp_folder)
    old = None
    if os.path.exists(final_folder):
        old = final_folder + ".old"
        if os.path.exists(old):
            shutil.rmtree(old)
        os.replace(final_folder, old)
    os.replace(tmp_folder, final_folder)
    _fsync_dir(os.path.dirname(os.path.abspath(final_folder)))
    if old:
        shutil.rmtree(old, ignore_errors=True)


def new_temp_folder(final_folder):
    """An empty folder beside ``final_folder`` to build it in."""
    parent = os.path.dirname(os.path.abspath(final_folder))
    os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix=f".{os.path.basename(final_folder)}.tmp-", dir=parent)


def model_state(model):
    """One flat state dict: encoder keys under the encoder's ``base_model_prefix`` (as a
    ``*For*`` model of transformers names them) and head keys as the head names them."""
    prefix = getattr(model.encoder, "base_model_prefix", "") or "encoder"
    state = {f"{prefix}.{k}": v for k, v in model.encoder.state_dict().items()}
    state.update(model.head.state_dict())
    # safetensors refuses shared storage (tied decoder weights): keep one copy each
    seen, out = {}, {}
    for k, v in state.items():
        key = (v.data_ptr(), v.shape, v.stride()) if v.numel() else None
        if key is not None and key in seen:
            continue
        if key is not None:
            seen[key] = k
        out[k] = v.detach().contiguous().cpu()
    return out


def save_model_folder(folder, model, tokenizer, task, spec_dict, extra=None):
    """Write a ``save_pretrained``-style folder that plain transformers loads, plus
    ``taskbert.json`` (task name, options, label maps) for ``taskbert predict``."""
    tmp = new_temp_folder(folder)
    try:
        config = model.encoder.config
        config.save_pretrained(tmp)
        cfg_path = os.path.join(tmp, "config.json")
        with open(cfg_path, encoding="utf-8") as fh:
            cfg = json.load(fh)
        if task.hf_architecture:
            cfg["architectures"] = [task.hf_architecture]
        cfg.update(task.hf_config())
        with open(cfg_path, "w", encoding="utf-8") as fh:
            json.dump(cfg, fh, indent=2)
        save_file(model_state(model), os.path.join(tmp, MODEL_FILE), metadata={"format": "pt"})
        tokenizer.save_pretrained(tmp)
        info = {
            "task": task.name,
            "task_options": spec_dict.get("task_options", {}),
            "task_state": task.state_dict(),
            "encoder_prefix": getattr(model.encoder, "base_model_prefix", "") or "encoder",
            "max_length": spec_dict.get("encoder", {}).get("max_length"),
            "spec": spec_dict,
        }
        info.update(extra or {})
        with open(os.path.join(tmp, TASK_FILE), "w", encoding="utf-8") as fh:
            json.dump(info, fh, indent=2, default=str)
        swap_in(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_head_state(folder, head, prefix):
    """Load the head's weights from a model folder's safetensors file."""
    state = load_file(os.path.join(folder, MODEL_FILE))
    head_state = {k: v for k, v in state.items() if not k.startswith(prefix + ".")}
    expected = head.state_dict()
    # tied weights were stored once (under the encoder); take them from the head itself
    for k in expected:
        if k not in head_state:
            head_state[k] = expected[k]
    head.load_state_dict(head_state, strict=True)


def save_training_state(folder, model, optimizer, scheduler, state, rng):
    """Write a resumable checkpoint folder atomically: weights (safetensors),
    optimizer/scheduler (torch.save, read back with weights_only=True), RNG and loop state."""
    tmp = new_temp_folder(folder)
    try:
        save_file(model_state(model), os.path.join(tmp, MODEL_FILE))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng": rng}, os.path.join(tmp, "optimizer.pt"))
        with open(os.path.join(tmp, "trainer_state.json"), "w", encoding="utf-8") as fh:
            json.dump(state, fh, indent=2)
        swap_in(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_training_state(folder, model, optimizer, scheduler):
    """Restore a checkpoint written by :func:`save_training_state`; returns
    ``(loop_state, rng_state)``."""
    state = load_file(os.path.join(folder, MODEL_FILE))
    prefix = getattr(model.encoder, "base_model_prefix", "") or "encoder"
    enc = {k[len(prefix) + 1:]: v for k, v in state.items() if k.startswith(prefix + ".")}
    model.encoder.load_state_dict(enc, strict=False)
    head = {k: v for k, v in state.items() if not k.startswith(prefix + ".")}
    model.head.load_state_dict({**model.head.state_dict(), **head}, strict=True)
    blob = torch.load(os.path.join(folder, "optimizer.pt"), weights_only=True)
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    with open(os.path.join(folder, "trainer_state.json"), encoding="utf-8") as fh:
        loop_state = json.load(fh)
    return loop_state, blob["rng"]


def model_state_prefix(model):
    """The key prefix of encoder weights in saved files (``bert`` for BERT)."""
    return getattr(model.encoder, "base_model_prefix", "") or "encoder"


def load_encoder_state(folder, model):
    """Load the encoder weights of a saved model folder into ``model.encoder``."""
    state = load_file(os.path.join(folder, MODEL_FILE))
    prefix = model_state_prefix(model) + "."
    enc = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    missing, unexpected = model.encoder.load_state_dict(enc, strict=False)
    if unexpected:
        raise RuntimeError(f"{folder}: unexpected encoder weights: {unexpected[:3]}")
