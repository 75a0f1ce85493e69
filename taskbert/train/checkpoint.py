"""Model folders and resumable checkpoints, written with :mod:`taskbert.io` so each is
complete or absent. Folders (``best/``, ``checkpoint/step-N/``) are built under a temporary
name and renamed into place, so a reader never sees half a model. Weights are safetensors;
the optimizer file holds only tensors and plain data and is read with
``torch.load(weights_only=True)``, so loading a checkpoint never runs code from it.
"""

import errno
import json
import os
import shutil

import torch
from safetensors.torch import load_file

from ..data.splits import file_sha256
from ..errors import DataError
from ..io import fsync_tree, new_temp_folder, save_weights, swap_in, temp_folder

MODEL_FILE = "model.safetensors"
TASK_FILE = "taskbert.json"


class DiskFull(Exception):
    """The device filled up while a model folder or checkpoint was written; ``file`` is the
    file being written (its final path). The half-written folder is already removed."""

    def __init__(self, file):
        super().__init__(file)
        self.file = file


def _no_space(exc):
    """True when ``exc`` says the device is full: ENOSPC/EDQUOT, or safetensors' error, which
    wraps the OS error in its message ("No space left on device (os error 28)")."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "No space left on device" in str(exc) or "Disk quota exceeded" in str(exc)


class _Building:
    """``with _Building(tmp, final, first_file) as b:`` around the writes of a folder built in
    ``tmp`` for ``final``; set ``b.file`` before each file. On any error ``tmp`` is removed, and
    a full device is raised as :class:`DiskFull` naming ``final/b.file``."""

    def __init__(self, tmp, final, file):
        self.tmp, self.final, self.file = tmp, final, file

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None:
            return False
        shutil.rmtree(self.tmp, ignore_errors=True)
        if _no_space(exc):
            raise DiskFull(os.path.join(self.final, self.file)) from None
        return False


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
    with _Building(tmp, folder, "config.json") as building:
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
        building.file = MODEL_FILE
        save_weights(model_state(model), os.path.join(tmp, MODEL_FILE), metadata={"format": "pt"})
        building.file = "tokenizer files"
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
        building.file = TASK_FILE
        with open(os.path.join(tmp, TASK_FILE), "w", encoding="utf-8") as fh:
            json.dump(info, fh, indent=2, default=str)
        swap_in(tmp, folder)


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


# ---------------------------------------------------------------- resumable checkpoints
#
# A run keeps its newest KEEP checkpoints as ``checkpoint/step-00000120/``. Each is built
# in a temporary folder whose last file is ``manifest.json`` (every file's size and
# SHA-256), then renamed into place in one step. A folder without a manifest, or whose files
# do not match it (truncated, overwritten), is skipped for the one before it.

KEEP = 2
STEP_PREFIX = "step-"
MANIFEST = "manifest.json"
STATE_FILES = (MODEL_FILE, "optimizer.pt", "trainer_state.json")


def rng_state():
    """Python, NumPy and torch RNG states in a form ``torch.load(weights_only=True)`` reads."""
    import random

    import numpy as np

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": random.getstate(), "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state):
    """Restore what :func:`rng_state` returned (dropout masks continue where they were)."""
    import random

    import numpy as np

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def step_folder(root, step):
    """``root/step-00000042``: zero-padded so names sort like steps."""
    return os.path.join(root, f"{STEP_PREFIX}{step:08d}")


def list_checkpoints(root):
    """``[(step, folder)]`` of the checkpoint folders under ``root``, newest first
    (complete or not; see :func:`verify_checkpoint`)."""
    found = []
    if os.path.isdir(root):
        for name in os.listdir(root):
            digits = name[len(STEP_PREFIX):]
            if name.startswith(STEP_PREFIX) and digits.isdigit():
                found.append((int(digits), os.path.join(root, name)))
    return sorted(found, reverse=True)


def verify_checkpoint(folder):
    """None when ``folder`` is a complete checkpoint, else why not (one short phrase)."""
    path = os.path.join(folder, MANIFEST)
    try:
        with open(path, encoding="utf-8") as fh:
            files = json.load(fh)["files"]
    except FileNotFoundError:
        return f"no {MANIFEST} (the write did not finish)"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"unreadable {MANIFEST} ({exc.__class__.__name__})"
    for name in STATE_FILES:
        if name not in files:
            return f"{MANIFEST} does not list {name}"
    for name, want in files.items():
        file = os.path.join(folder, name)
        if not os.path.isfile(file):
            return f"{name} is missing"
        size = os.path.getsize(file)
        if size != want["bytes"]:
            return f"{name} is {size} bytes, {MANIFEST} says {want['bytes']}"
        if file_sha256(file) != want["sha256"]:
            return f"{name} does not match its SHA-256 in {MANIFEST}"
    return None


def latest_checkpoint(root):
    """``(folder or None, skipped)``: the newest complete checkpoint under ``root`` and the
    ``[(folder, reason)]`` of newer ones that are not complete."""
    skipped = []
    for _, folder in list_checkpoints(root):
        reason = verify_checkpoint(folder)
        if reason is None:
            return folder, skipped
        skipped.append((folder, reason))
    return None, skipped


def save_training_state(root, model, optimizer, scheduler, state, rng, keep=KEEP):
    """Write ``root/step-N`` (N = ``state["step"]``) atomically: weights (safetensors),
    optimizer/scheduler/RNG (``torch.save`` of tensors and plain data, read back with
    ``weights_only=True``), loop state (JSON) and the manifest; then keep the newest
    ``keep`` checkpoints. Returns the folder."""
    os.makedirs(root, exist_ok=True)
    final = step_folder(root, state["step"])
    tmp = temp_folder(f".{os.path.basename(final)}.tmp-", root)
    with _Building(tmp, final, MODEL_FILE) as building:
        save_weights(model_state(model), os.path.join(tmp, MODEL_FILE))
        building.file = "optimizer.pt"
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng": rng}, os.path.join(tmp, "optimizer.pt"))
        building.file = "trainer_state.json"
        with open(os.path.join(tmp, "trainer_state.json"), "w", encoding="utf-8") as fh:
            json.dump(state, fh, indent=2)
        files = {name: {"bytes": os.path.getsize(os.path.join(tmp, name)),
                        "sha256": file_sha256(os.path.join(tmp, name))} for name in sorted(os.listdir(tmp))}
        fsync_tree(tmp)  # the data is on disk before the manifest says it is complete
        building.file = MANIFEST
        with open(os.path.join(tmp, MANIFEST), "w", encoding="utf-8") as fh:
            json.dump({"step": state["step"], "files": files}, fh, indent=2)
        swap_in(tmp, final)
    prune_checkpoints(root, keep)
    return final


def prune_checkpoints(root, keep=KEEP):
    """Delete all but the newest ``keep`` checkpoints, and leftovers of killed writes."""
    for _, folder in list_checkpoints(root)[keep:]:
        shutil.rmtree(folder, ignore_errors=True)
    for name in os.listdir(root):
        if name.startswith(f".{STEP_PREFIX}") or name.endswith(".old"):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def discard_after(root, step):
    """Delete checkpoints newer than ``step`` (incomplete ones a resume skipped): the
    resumed run writes them again."""
    for s, folder in list_checkpoints(root):
        if s > step:
            shutil.rmtree(folder, ignore_errors=True)


def safe_torch_load(path):
    """``torch.load(path, weights_only=True)``: tensors and plain data only. A file that
    holds anything else (a pickled callable could run code) is refused with one line."""
    import pickle
    import re
    import warnings

    try:
        with warnings.catch_warnings():   # e.g. "Detected pickle protocol 4": lines around the refusal
            warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.")
            return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        name = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        raise DataError(f"{path}: refused to load: it holds Python objects besides tensors and plain "
                        f"data{f' ({name[1]})' if name else ''}; taskbert checkpoints never do") from None


def load_training_state(folder, model, optimizer, scheduler):
    """Restore a checkpoint written by :func:`save_training_state` into ``model`` (a
    TaskModel), ``optimizer`` and ``scheduler``; returns ``(loop_state, rng)``."""
    head = _load_encoder_part(folder, model, load_file(os.path.join(folder, MODEL_FILE)))
    model.head.load_state_dict({**model.head.state_dict(), **head}, strict=True)
    blob = safe_torch_load(os.path.join(folder, "optimizer.pt"))
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
    _load_encoder_part(folder, model, load_file(os.path.join(folder, MODEL_FILE)))


def _load_encoder_part(folder, model, state):
    """Put the encoder weights of a saved ``state`` (keys under :func:`model_state_prefix`)
    into ``model.encoder``; returns the other weights (the head's)."""
    prefix = model_state_prefix(model) + "."
    enc = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    _, unexpected = model.encoder.load_state_dict(enc, strict=False)
    if unexpected:
        raise RuntimeError(f"{folder}: unexpected encoder weights: {unexpected[:3]}")
    return {k: v for k, v in state.items() if not k.startswith(prefix)}


def save_best(folder, model, tokenizer, task, spec, extra=None):
    """Write ``best/``: the model folder of ``model`` (:func:`save_model_folder`). A task
    object with a ``save_best(folder, model, tokenizer, spec, extra)`` of its own writes it
    itself: a multi-task run's :class:`~taskbert.multitask.MultiTask`, one folder per member."""
    own = getattr(task, "save_best", None)
    if own is not None:
        own(folder, model, tokenizer, spec, extra)
    else:
        save_model_folder(folder, model, tokenizer, task, spec.to_dict(), extra=extra)


def load_best(folder, model, task):
    """Load what :func:`save_best` wrote into ``model`` (the task's own ``load_best(folder,
    model)`` where it has one)."""
    own = getattr(task, "load_best", None)
    if own is not None:
        own(folder, model)
    else:
        load_head_state(folder, model.head, model_state_prefix(model))
        load_encoder_state(folder, model)
