"""``taskbert run --resume``: put a :class:`~taskbert.train.loop.Trainer` back where its newest
complete checkpoint left it (the loop's exact-resume contract is in ``loop.py``'s docstring)."""

import json
import os

import torch

from .. import io as tio
from ..errors import SpecError
from . import checkpoint as ckpt
from .checkpoint import set_rng_state


def restore(trainer):
    """Load the newest complete checkpoint into ``trainer`` (weights, optimizer, schedule, RNG
    streams, loop position, logging window, best metric, loss scale) and cut ``metrics.jsonl``
    and the checkpoints back to it."""
    t = trainer
    folder, skipped = ckpt.latest_checkpoint(t.checkpoint_root)
    if folder is None:
        raise SpecError(f"--resume: {t.checkpoint_root} holds no complete checkpoint")
    for bad, why in skipped:
        t._say(f"warning: skipping checkpoint {bad}: {why}")
    state, rngs = ckpt.load_training_state(folder, t.model, t.optimizer, t.scheduler)
    if state["total_steps"] != t.total_steps:
        raise SpecError(f"--resume: the checkpoint was made for {state['total_steps']} steps, "
                        f"this spec and data make {t.total_steps}; resume with the same spec")
    if len(rngs) == t.world.world:
        set_rng_state(rngs[t.world.rank])
    else:  # another number of processes: same batches, but new dropout streams
        set_rng_state(rngs[0])
        torch.manual_seed(t.spec.train.seed + 1 + t.world.rank + state["step"])
        t._say(f"warning: resuming on {t.world.world} process{'es' if t.world.world != 1 else ''} "
               f"a run checkpointed on {len(rngs)}: dropout masks will differ from the original run")
    t.step, t.epoch, t.batch_pos = state["step"], state["epoch"], state["batch_pos"]
    t.stale, t.stop, t.window = state["stale"], state["stop"], state["window"]
    t.best_value, t.best_step = state["best_value"], state["best_step"]
    t.scaling.load_state_dict(state.get("loss_scale"))
    path = os.path.join(t.run_dir, "metrics.jsonl")
    lines = []
    if os.path.exists(path):  # lines logged after the checkpoint are logged again
        with open(path, encoding="utf-8") as fh:
            lines = [ln for ln in fh.read().splitlines() if ln.strip()][:state["metrics_lines"]]
    t.history = [json.loads(ln) for ln in lines]
    t.world.barrier()  # every rank has read metrics.jsonl and the checkpoint
    if t.world.is_main:
        tio.atomic_write(path, "".join(ln + "\n" for ln in lines))
        ckpt.discard_after(t.checkpoint_root, t.step)
        tio.recover_folder(os.path.join(t.run_dir, "best"))
        tio.remove_leftovers(t.run_dir)
    t.last_checkpoint = folder
    t._say(f"resumed from {folder} (step {t.step}, epoch {t.epoch + 1})")
