"""The one training loop: AdamW, linear warmup then linear decay, gradient
accumulation and clipping, evaluation, best-model keeping, early stopping, exact resume,
and data parallelism over the processes torchrun starts (see ``distributed.py``).

Read ``Trainer.train`` top to bottom; everything it calls is below it.

Exact resume: the checkpoint holds everything the next step depends on: weights,
optimizer, schedule, the RNG states (Python, NumPy, torch: the dropout masks), the
position in the epoch's batch list (a pure function of seed and epoch), the partly filled
logging window, the best metric, the early-stopping count and how many lines
``metrics.jsonl`` had. A run resumed from step N repeats bit for bit what the
uninterrupted run did after step N.
"""

import json
import math
import os
import sys
import time

import torch
from tqdm.auto import tqdm

from .. import io as tio
from ..data.batching import batch_fields, collate, pad_id, row_groups, row_parts, to_device, train_batches, units
from ..errors import RunError
from ..inference import run_inference
from ..task import batch_loss
from . import checkpoint as ckpt
from .checkpoint import rng_state
from .compiling import compile_model
from .distributed import World
from .optim import build_optimizer, linear_schedule, pick_precision
from .resume import restore
from .scaling import DeferredChecks, LossScaler

#: wall-clock fields of metrics.jsonl: the only ones that differ between a resumed run
#: and an uninterrupted one (they measure this machine's speed, not the model)
TIMING_FIELDS = ("samples_per_s", "tokens_per_s")


def new_window():
    """Sums over the optimizer steps since the last log line (saved in checkpoints, so a
    resumed run logs the same ``train/loss``)."""
    return {"loss": 0.0, "batches": 0, "samples": 0, "tokens": 0}


class Trainer:
    """Trains ``model`` on the train rows, evaluates on validation, keeps the best.

    ``rows`` and ``examples`` are ``{split: list}``; ``run_dir`` is the run folder;
    ``world`` says which process of a data-parallel run this is (one process if None);
    ``plan`` is :func:`~taskbert.train.steps.plan_steps`' answer for the train rows, as
    :func:`~taskbert.train.steps.check_steps` checked it.
    Plugins see this object in the lifecycle hooks (``spec``, ``task``, ``model``,
    ``step``, ``total_steps``, ``run_dir``, ``history``, ``device``, ``world``); the hooks
    run on the main process only.
    """

    def __init__(self, spec, task, model, tokenizer, rows, examples, run_dir, hook, resume=False,
                 world=None, *, plan):
        self.spec, self.task, self.model, self.tokenizer = spec, task, model, tokenizer
        self.rows, self.examples, self.run_dir, self.hook = rows, examples, run_dir, hook
        self.resume, self.plan = resume, plan   # plan_steps' answer, as check_steps checked it
        self.world = world or World()
        self.device = self.world.device
        self.amp_dtype = pick_precision(spec.train.precision, self.device)
        self.scaling = LossScaler(self.amp_dtype, self.device)   # fp16: loss scaling
        self.metric = spec.train.metric or task.default_metric
        self.metric_key = self.metric if "/" in self.metric else f"validation/{self.metric}"
        self.higher = task.greater_is_better(self.metric)
        self.history = []
        self.step, self.epoch, self.batch_pos, self.stale, self.stop = 0, 0, 0, 0, False
        self.best_value = None
        self.best_step = None
        self.window = new_window()
        self.checkpoint_root = os.path.join(run_dir, "checkpoint")
        self.last_checkpoint = None
        self.pad_id = pad_id(tokenizer)

    # ------------------------------------------------------------------ the loop
    def train(self):
        """Run the whole schedule; return the final metrics of every evaluated split."""
        t = self.spec.train
        model = self.model.to(self.device)
        self.hook.taskbert_prepare_model(model=model, device=self.device, phase="train")
        self.lengths = [len(r["input_ids"]) for r in self.rows["train"]]
        self.groups = row_groups(self.task, self.rows["train"])   # None: every row on its own
        self.parts = row_parts(self.task, self.rows["train"])     # None: one task
        _, self.total_steps, warmup = self.plan
        self.optimizer = build_optimizer(model, t.lr, t.weight_decay, self.device)
        self.scheduler = linear_schedule(self.optimizer, warmup, self.total_steps)
        self.checks = DeferredChecks(self.device, self.world, self.scaling, self.optimizer)
        self.step_loss = 0.0   # the summed loss of the step's batches (on the device if deferred)
        if self.resume:
            restore(self)   # resume.py: weights, optimizer, RNGs, the place in the epoch ...
        elif self.world.enabled:  # every rank draws its own dropout masks
            torch.manual_seed(t.seed + 1 + self.world.rank)
        # DDP with several processes, then torch.compile when train.compile asks (DDP's order)
        self.train_model = compile_model(self.world.wrap(model, self._probe), t.compile)
        if self.world.is_main:
            if t.precision == "auto" and self.amp_dtype is not None:   # say what auto chose
                print(f"precision: auto trains in {str(self.amp_dtype).removeprefix('torch.')} autocast on "
                      f"this {self.device.type} (it has native support); train.precision: fp32 turns "
                      f"it off", file=sys.stderr)
            self.hook.taskbert_train_start(trainer=self)   # the loggers are made here
            self.task.on_train_start(self)
        self.bar = tqdm(total=self.total_steps, initial=self.step, desc="training", unit="step",
                        dynamic_ncols=True, disable=None if self.world.is_main else True)
        self.stop = self.stop or self.step >= self.total_steps
        self._t0 = time.perf_counter()
        while not self.stop:
            batches = train_batches(self.lengths, t.batch_size, t.seed, self.epoch, groups=self.groups,
                                    parts=self.parts, mixing=(t.mixing, t.mixing_temperature))
            self.usable = max(1, len(batches) // t.grad_accum) * t.grad_accum  # drop a ragged tail
            self.train_model.train()
            for pos in range(self.batch_pos, self.usable):
                sync = (pos + 1) % t.grad_accum == 0
                self._forward_backward(batches[pos], sync)
                if not sync:
                    continue  # accumulate gradients of grad_accum batches
                self._optimizer_step()
                self.batch_pos = pos + 1
                self._after_step()  # log, evaluate, checkpoint, decide to stop
                if self.stop:
                    break
            if not self.stop:
                self.epoch, self.batch_pos = self.epoch + 1, 0
        self.bar.close()
        return self._finish()

    def _probe(self):
        """One forward and backward pass on two rows, without dropout (see World.wrap)."""
        rows = self.rows["train"][:2]
        rows = [r for r in rows if self.parts is None or r["task_index"] == rows[0]["task_index"]]
        batch = to_device(collate(rows, self.pad_id, *batch_fields(self.task, rows)), self.device)
        self.model.eval()
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            loss = batch_loss(self.model(self.task.prepare_batch(batch, training=False)), batch)
        loss.backward()
        self.model.train()

    def _forward_backward(self, ids, sync):
        """Loss and gradients of one batch (this rank's share of it under DDP)."""
        t = self.spec.train
        mine = self.world.shard(ids, self.groups)
        # a rank left without rows still runs one, weighted 0, so DDP's all-reduce matches
        rows = [self.rows["train"][i] for i in (mine or ids[:1])]
        batch = self.task.prepare_batch(to_device(collate(rows, self.pad_id, *batch_fields(self.task, rows)), self.device),
                                        training=True)
        # the loss is a mean over examples (rows, unless whole examples); weigh this rank's share
        n_mine, n_all = len(units(mine, self.groups)), len(units(ids, self.groups))
        weight = n_mine * self.world.world / n_all  # exactly 1.0 for one process
        with self.world.no_sync(self.train_model, sync):
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                enabled=self.amp_dtype is not None):
                loss = batch_loss(self.train_model(batch), batch)   # scalar, mean over this rank's rows
            self.scaling.backward((loss if weight == 1 else loss * weight) / t.grad_accum)
        value = loss.detach() if mine else 0.0   # read back in _optimizer_step (or later)
        tokens = sum(len(r["input_ids"]) for r in rows) if mine else 0   # counted on the host
        if self.world.enabled:  # the mean over the whole batch, the same on every rank
            loss_sum, tokens = self.world.sum([float(value) * n_mine, tokens])
            value, tokens = loss_sum / n_all, int(tokens)
        self.step_loss = self.step_loss + value
        self.window["batches"] += 1
        self.window["samples"] += n_all
        self.window["tokens"] += tokens

    def _optimizer_step(self):
        max_norm = self.spec.train.max_grad_norm
        if self.checks.deferred:   # nothing read back: a bad update is skipped on the device
            bad = self.checks.flag(self.step_loss)
            norm, skipped = self.scaling.step(self.optimizer, max_norm, bad)
            self.checks.record(self.step_loss, norm, bad, self.step + 1)
        else:
            value = float(self.step_loss)
            if not math.isfinite(value):
                self._fail(f"train/loss is {value}")
            self.window["loss"] += value
            norm, skipped = self.scaling.step(self.optimizer, max_norm)
            if norm is not None and not skipped and not torch.isfinite(norm):   # fp16 overflows are skipped
                self._fail(f"the gradient norm is {float(norm)}")
        self.step_loss = 0.0
        self.scaling.schedule(self.scheduler, skipped)
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.bar.update(1)

    def _kept(self, good="good"):
        if self.last_checkpoint:
            return f"the last {good} checkpoint ({os.path.basename(self.last_checkpoint)}) is kept " \
                   f"in {self.checkpoint_root}"
        return "no checkpoint was written before it"

    def _fail(self, what, bad_step=None):
        """Stop a run whose loss or gradients stopped being finite; the update that would
        have spoiled the weights is not made and the last good checkpoint stays. ``bad_step``:
        a deferred check found it (the steps after it ran until this check)."""
        self.bar.close()
        where = f"at step {self.step + 1} (epoch {self.epoch + 1}); training stopped before that update"
        if bad_step:
            where = f"at step {bad_step}; its update was not made and training stopped at step {self.step}, " \
                    f"where this is checked on a {self.device.type} (train.log_every)"
        raise RunError(f"{what} {where}; {self._kept()}; lower train.lr or check the data")

    def _disk_full(self, exc):
        """One line for a device that filled up while ``best/`` or a checkpoint was written
        (the half-written folder is gone; the one before it is untouched)."""
        self.bar.close()
        raise RunError(f"no space left on the device while writing {exc.file}; {self._kept('complete')}; "
                       f"free some space, then continue with --resume") from None

    def _after_step(self):
        t = self.spec.train
        log = self.step % t.log_every == 0 or self.step == self.total_steps
        if t.eval_every == "epoch":
            evaluate = self.batch_pos >= self.usable
        else:
            evaluate = self.step % t.eval_every == 0
        evaluate = evaluate or self.step == self.total_steps
        save = evaluate or (t.save_every and self.step % t.save_every == 0)
        if self.checks.deferred and (log or save):   # the one read back from the device
            loss_sum, bad_step = self.checks.read()
            if bad_step:
                self._fail("the loss or the gradient norm was not finite", bad_step)
            self.window["loss"] += loss_sum
        if log:
            self._log_train()
        if evaluate:
            improved = self._evaluate_and_keep()
            self.stale = 0 if improved else self.stale + 1
            if t.early_stopping and self.stale >= t.early_stopping:
                self.stop = True
                self._say(f"early stopping: no gain in {self.metric_key} for {self.stale} evaluations")
        if self.step >= self.total_steps:
            self.stop = True
        if save:
            self._save_checkpoint()  # after the stop decision, so a resume honours it

    # ----------------------------------------------------------- evaluation
    @torch.inference_mode()
    def predict_rows(self, rows, desc="evaluating"):
        """Per-row results of the task's ``collect`` for ``rows`` (in row order), and the
        mean loss when the rows carry labels. Every rank of a distributed run takes part
        and gets all results."""
        self.model.eval()
        bs = self.spec.train.eval_batch_size or self.spec.train.batch_size * 2
        return run_inference(self.model, self.task, rows, bs, self.pad_id, self.device,
                             self.amp_dtype, desc, world=self.world)

    def evaluate(self, split):
        """Predictions and metrics (``{split}/{name}``) of the current model on a split."""
        results, loss = self.predict_rows(self.rows[split], desc=f"evaluating {split}")
        predictions = self.task.decode(results, self.rows[split], self.examples[split])
        metrics = {f"{split}/{k}": v for k, v in self.task.score(predictions, self.examples[split]).items()}
        if loss is not None:
            metrics[f"{split}/loss"] = loss
        return predictions, metrics

    def _evaluate_and_keep(self):
        """Evaluate on validation (if any), save ``best/`` on improvement; True if improved."""
        if "validation" not in self.rows:
            self._save_best()  # no validation split: the latest model is the one we keep
            return True
        _, metrics = self.evaluate("validation")
        self.train_model.train()
        metrics.update(epoch=self.epoch + 1, step=self.step)
        self.record(metrics)
        if self.metric_key not in metrics:
            known = ", ".join(k for k in metrics if k.startswith("validation/"))
            raise RunError(f"train.metric: {self.metric!r} is not computed by task "
                           f"{self.task.name!r}; available: {known}")
        value = metrics[self.metric_key]
        better = self.best_value is None or (value > self.best_value if self.higher else value < self.best_value)
        if better:
            self.best_value, self.best_step = value, self.step
            self._save_best()
        return better

    def _save_best(self):
        if self.world.enabled:  # every rank keeps it: nodes need not share a file system
            self._best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        if self.world.is_main:
            extra = {"step": self.step, "metric": self.metric_key, "value": self.best_value}
            folder = os.path.join(self.run_dir, "best")
            try:
                ckpt.save_best(folder, self.model, self.tokenizer, self.task, self.spec, extra)
            except ckpt.DiskFull as exc:
                self._disk_full(exc)

    # ---------------------------------------------------------- bookkeeping
    def _log_train(self):
        w = self.window
        elapsed = max(1e-9, time.perf_counter() - self._t0)
        metrics = {
            "step": self.step, "epoch": self.epoch + 1,
            "train/loss": w["loss"] / max(1, w["batches"]),
            "lr": self.optimizer.param_groups[0]["lr"],
            "samples_per_s": w["samples"] / elapsed,
            "tokens_per_s": w["tokens"] / elapsed,
        }
        self.bar.set_postfix(loss=f"{metrics['train/loss']:.4f}")
        self.record(metrics)
        self.window = new_window()
        self._t0 = time.perf_counter()

    def _say(self, text):
        if self.world.is_main:   # notes and warnings go where the progress bar goes, not stdout
            tqdm.write(text, file=sys.stderr)

    def record(self, metrics):
        """Append to ``metrics.jsonl`` (flushed per line) and call the logger hook; only
        the main process writes, every process keeps the history."""
        self.history.append(metrics)
        if not self.world.is_main:
            return
        with open(os.path.join(self.run_dir, "metrics.jsonl"), "a", encoding="utf-8") as fh:
            fh.write(json.dumps(metrics) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.hook.taskbert_log_metrics(trainer=self, step=self.step, metrics=metrics)

    def _save_checkpoint(self):
        state = {"step": self.step, "epoch": self.epoch, "batch_pos": self.batch_pos,
                 "stale": self.stale, "stop": self.stop, "window": self.window,
                 "best_value": self.best_value, "best_step": self.best_step,
                 "metrics_lines": len(self.history), "total_steps": self.total_steps,
                 "world_size": self.world.world, "loss_scale": self.scaling.state_dict()}
        rngs = self.world.gather(rng_state())  # each rank's dropout stream
        if self.world.is_main:
            try:
                self.last_checkpoint = ckpt.save_training_state(
                    self.checkpoint_root, self.model, self.optimizer, self.scheduler, state, rngs)
            except ckpt.DiskFull as exc:
                self._disk_full(exc)

    def _finish(self):
        """Reload ``best/``, evaluate it on every split with gold labels, write predictions."""
        self.world.barrier()  # best/ is complete before any rank reads it
        best = os.path.join(self.run_dir, "best")
        if getattr(self, "_best_state", None) is not None:
            self.model.load_state_dict(self._best_state)
        elif os.path.isdir(best):
            ckpt.load_best(best, self.model, self.task)
        final, lines = {}, []
        for split in ("validation", "test"):
            if split not in self.rows:
                continue
            predictions, metrics = self.evaluate(split)
            final.update(metrics)
            for i, (pred, ex) in enumerate(zip(predictions, self.examples[split])):
                line = {"split": split, "index": i, **pred}
                gold = self.task.gold(ex)
                if gold is not None:
                    line["gold"] = gold
                lines.append(json.dumps(line, ensure_ascii=False))
        if lines and self.world.is_main:
            tio.atomic_write(os.path.join(self.run_dir, "predictions.jsonl"), "\n".join(lines) + "\n")
        if final:
            final.update(step=self.step, best_step=self.best_step, final=True)
            self.record(final)
        if self.world.is_main:
            self.task.on_train_end(self, final)
            self.hook.taskbert_train_end(trainer=self, metrics=final)
        return final
