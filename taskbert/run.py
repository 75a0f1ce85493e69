"""From a spec to a finished run folder: check everything, load, encode, train.

``prepare`` does all the checking that needs no model weights, so ``taskbert validate``
and ``taskbert run`` fail the same way, before anything heavy happens or any file is
written. ``execute`` then owns the run folder.
"""

import json
import os
import platform
import shutil
import subprocess
import sys
import time

from . import __version__
from . import checkpoint as ckpt
from .data import encode_split, file_sha256, load_splits
from .encoder import check_encoder
from .errors import DataError, SpecError
from .plugins import get_plugin_manager, registries


class Prepared:
    """What ``prepare`` found: the task instance, the examples and any warnings."""

    def __init__(self, spec, task, examples, warnings):
        self.spec, self.task, self.examples, self.warnings = spec, task, examples, warnings


def check_output(spec, resume=False, overwrite=False):
    """The run folder must be creatable and writable, and must not hold another run
    unless ``--resume`` or ``--overwrite`` says what to do with it."""
    out = spec.output
    if os.path.exists(out) and not os.path.isdir(out):
        raise SpecError(f"output: {out} is a file; give a folder path")
    parent = out
    while not os.path.exists(parent):
        parent = os.path.dirname(parent) or "."
    if not os.access(parent, os.W_OK | os.X_OK):
        raise SpecError(f"output: cannot write in {parent}; choose a writable folder")
    has_run = os.path.isdir(out) and any(
        os.path.exists(os.path.join(out, f)) for f in ("spec.yaml", "metrics.jsonl", "best", "checkpoint"))
    if resume:
        if not os.path.isdir(os.path.join(out, "checkpoint")):
            raise SpecError(f"--resume: {out} holds no checkpoint to resume from")
    elif has_run and not overwrite:
        raise SpecError(f"output: {out} already holds a run; pass --resume to continue it "
                        f"or --overwrite to replace it")


def prepare(spec):
    """Check the spec's task, encoder and data without loading weights."""
    regs = registries()
    task = regs.tasks.get(spec.task)(spec.options)
    check_encoder(spec)
    if "train" not in spec.data.splits() and task.trainable_encoder():
        raise SpecError(f"{spec.path}: data.train: required for training")
    examples = load_splits(spec, task, regs.readers)
    warnings = []
    for split, exs in examples.items():
        warnings.extend(task.check(exs, split, spec.data.splits()[split]))
    return Prepared(spec, task, examples, warnings)


def manifest(spec):
    """Versions, data hashes, seed and the git commit, for ``manifest.json``."""
    import tokenizers
    import torch
    import transformers

    commit = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=os.path.dirname(spec.path or "."), timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "taskbert": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
        "platform": platform.platform(), "command": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seed": spec.train.seed, "git_commit": commit,
        "data": {split: {"path": p, "sha256": file_sha256(p)} for split, p in spec.data.splits().items()},
    }


def execute(spec, resume=False, overwrite=False):
    """Train per the spec; return the final metrics. The run folder is created here."""
    import torch
    import yaml

    from .task import TaskModel
    from .trainer import Trainer, seed_everything

    check_output(spec, resume, overwrite)
    prepared = prepare(spec)
    task, examples = prepared.task, prepared.examples
    if "train" not in examples:
        raise SpecError(f"{spec.path}: data.train: required by taskbert run")
    if spec.train.threads:
        torch.set_num_threads(spec.train.threads)
    hook = get_plugin_manager().hook
    seed_everything(spec.train.seed)
    encoder, tokenizer = hook.taskbert_load_encoder(spec=spec)
    head = task.build_head(encoder)
    model = TaskModel(task, encoder, head)
    rows = {split: encode_split(task, exs, tokenizer, spec.encoder.max_length)
            for split, exs in examples.items()}
    if overwrite and os.path.isdir(spec.output) and not resume:
        shutil.rmtree(spec.output)
    os.makedirs(spec.output, exist_ok=True)
    if not resume:
        ckpt.atomic_write(os.path.join(spec.output, "spec.yaml"),
                          yaml.safe_dump(spec.to_dict(), sort_keys=False))
        ckpt.atomic_json(os.path.join(spec.output, "manifest.json"), manifest(spec))
    for w in prepared.warnings:
        print(f"warning: {w}", file=sys.stderr)
    trainer = Trainer(spec, task, model, tokenizer, rows, examples, spec.output, hook, resume=resume)
    return trainer.train()


def summary_line(metrics):
    """A short human line of the final metrics."""
    keys = [k for k in metrics if "/" in k and not k.endswith("/loss")]
    return "  ".join(f"{k} {metrics[k]:.4f}" for k in keys if isinstance(metrics[k], (int, float)))


def dump_json(obj):
    """JSON text for CLI output."""
    return json.dumps(obj, indent=2, ensure_ascii=False, default=str)


__all__ = ["prepare", "execute", "check_output", "manifest", "DataError"]
