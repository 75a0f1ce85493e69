"""The one training loop: AdamW, linear warmup then linear decay, gradient
accumulation and clipping, evaluation, best-model keeping, early stopping, resume.

Read ``Trainer.train`` top to bottom; everything it calls is below it.
"""

import json
import math
import os
import random
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from . import checkpoint as ckpt
from .batching import collate, eval_batches, to_device, train_batches
from .errors import RunError


def pick_device():
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_precision(setting, device):
    """The autocast dtype for ``train.precision`` (None = fp32).

    ``auto`` uses bf16 only where the hardware has it: on this kind of CPU (no bf16 units)
    autocast bf16 made training about 15x slower, so a CPU without native bf16 stays fp32.
    """
    if setting == "fp32":
        return None
    if setting == "fp16":
        return torch.float16
    if setting == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    try:
        native = torch.ops.mkldnn._is_mkldnn_bf16_supported()
    except (AttributeError, RuntimeError):
        native = False
    return torch.bfloat16 if native else None


def build_optimizer(model, lr, weight_decay, device):
    """AdamW with no weight decay on biases and LayerNorm weights (as BERT did).

    The fused kernel was about 21% faster than foreach on MiniLM on a 2-core CPU.
    """
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    try:
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=lr)


def linear_schedule(optimizer, warmup_steps, total_steps):
    """Linear warmup from 0 to the peak lr, then linear decay to 0 at ``total_steps``."""
    def factor(step):
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def rng_state():
    """Python, NumPy and torch RNG states in a form ``torch.load(weights_only=True)`` reads."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": random.getstate(), "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state):
    """Restore what :func:`rng_state` returned."""
    random.setstate(tuple(state["python"][:1]) + (tuple(state["python"][1]),) + tuple(state["python"][2:]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed):
    """Seed Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


class Trainer:
    """Trains ``model`` on the train rows, evaluates on validation, keeps the best.

    ``rows`` and ``examples`` are ``{split: list}``; ``run_dir`` is the run folder.
    Plugins see this object in the lifecycle hooks (``spec``, ``task``, ``model``,
    ``step``, ``total_steps``, ``run_dir``, ``history``).
    """

    def __init__(self, spec, task, model, tokenizer, rows, examples, run_dir, hook, resume=False):
        self.spec, self.task, self.model, self.tokenizer = spec, task, model, tokenizer
        self.rows, self.examples, self.run_dir, self.hook = rows, examples, run_dir, hook
        self.resume = resume
        self.device = pick_device()
        self.amp_dtype = pick_precision(spec.train.precision, self.device)
        self.metric = spec.train.metric or task.default_metric
        self.metric_key = self.metric if "/" in self.metric else f"validation/{self.metric}"
        self.higher = task.greater_is_better(self.metric)
        self.history = []
        self.step = 0
        self.best_value = None
        self.best_step = None
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    # ------------------------------------------------------------------ the loop
    def train(self):
        """Run the whole schedule; return the final metrics of every evaluated split."""
        t = self.spec.train
        model = self.model.to(self.device)
        train_rows = self.rows["train"]
        lengths = [len(r["input_ids"]) for r in train_rows]
        batches_per_epoch = math.ceil(len(train_rows) / t.batch_size)
        steps_per_epoch = max(1, batches_per_epoch // t.grad_accum)
        total = t.max_steps or max(1, math.ceil(t.epochs * steps_per_epoch))
        self.total_steps = total
        warmup = int(t.warmup * total) if t.warmup < 1 else int(t.warmup)
        optimizer = build_optimizer(model, t.lr, t.weight_decay, self.device)
        scheduler = linear_schedule(optimizer, warmup, total)
        self.optimizer, self.scheduler = optimizer, scheduler
        epoch, batch_pos, stale = 0, 0, 0
        if self.resume:
            epoch, batch_pos, stale = self._restore(optimizer, scheduler)
        self.hook.taskbert_train_start(trainer=self)
        bar = tqdm(total=total, initial=self.step, desc="training", unit="step", dynamic_ncols=True,
                   disable=None)  # None: no bar when stderr is not a terminal (CI logs)
        window = {"loss": 0.0, "batches": 0, "samples": 0, "tokens": 0, "t0": time.perf_counter()}
        stop = self.step >= total
        while not stop:
            batches = train_batches(lengths, t.batch_size, t.seed, epoch)
            usable = steps_per_epoch * t.grad_accum  # drop a ragged accumulation tail
            model.train()
            for pos in range(batch_pos, usable):
                batch = to_device(collate([train_rows[i] for i in batches[pos]], self.pad_id,
                                          self.task.pad_fields), self.device)
                with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                    enabled=self.amp_dtype is not None):
                    out = model(batch)
                    loss = self.task.loss(out, batch)   # scalar, mean over the batch
                (loss / t.grad_accum).backward()
                window["loss"] += loss.item()
                window["batches"] += 1
                window["samples"] += len(batches[pos])
                window["tokens"] += int(batch["attention_mask"].sum())
                if (pos + 1) % t.grad_accum:
                    continue
                if t.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), t.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                self.step += 1
                bar.update(1)
                if not math.isfinite(window["loss"]):
                    bar.close()
                    raise RunError(f"loss became {window['loss']} at step {self.step}; "
                                   f"the last good checkpoint is kept (try a lower train.lr)")
                batch_pos = pos + 1
                if self.step % t.log_every == 0 or self.step == total:
                    self._log_train(window, optimizer, epoch, bar)
                at_epoch_end = batch_pos >= usable
                if (t.eval_every == "epoch" and at_epoch_end) or \
                        (t.eval_every != "epoch" and self.step % t.eval_every == 0) or \
                        self.step == total:
                    improved = self._evaluate_and_keep(epoch, bar)
                    stale = 0 if improved else stale + 1
                    self._save_checkpoint(epoch, batch_pos, stale)
                    if t.early_stopping and stale >= t.early_stopping:
                        tqdm.write(f"early stopping: no gain in {self.metric_key} for {stale} evaluations")
                        stop = True
                elif t.save_every and self.step % t.save_every == 0:
                    self._save_checkpoint(epoch, batch_pos, stale)
                if stop or self.step >= total:
                    stop = True
                    break
            if not stop:
                epoch, batch_pos = epoch + 1, 0
        bar.close()
        return self._finish()

    # ----------------------------------------------------------- evaluation
    @torch.inference_mode()
    def predict_rows(self, rows, desc="evaluating"):
        """Per-row results of the task's ``collect`` for ``rows`` (in row order), and the
        mean loss when the rows carry labels."""
        model = self.model
        model.eval()
        bs = self.spec.train.eval_batch_size or self.spec.train.batch_size * 2
        return run_inference(model, self.task, rows, bs, self.pad_id, self.device,
                             self.amp_dtype, desc)

    def evaluate(self, split):
        """Predictions and metrics (``{split}/{name}``) of the current model on a split."""
        results, loss = self.predict_rows(self.rows[split], desc=f"evaluating {split}")
        predictions = self.task.decode(results, self.rows[split], self.examples[split])
        metrics = {f"{split}/{k}": v for k, v in self.task.score(predictions, self.examples[split]).items()}
        if loss is not None:
            metrics[f"{split}/loss"] = loss
        return predictions, metrics

    def _evaluate_and_keep(self, epoch, bar):
        """Evaluate on validation (if any), save ``best/`` on improvement; True if improved."""
        if "validation" not in self.rows:
            self._save_best()  # no validation split: the latest model is the one we keep
            return True
        _, metrics = self.evaluate("validation")
        self.model.train()
        metrics.update(epoch=epoch + 1, step=self.step)
        self._record(metrics)
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
        ckpt.save_model_folder(os.path.join(self.run_dir, "best"), self.model, self.tokenizer,
                               self.task, self.spec.to_dict(),
                               extra={"step": self.step, "metric": self.metric_key,
                                      "value": self.best_value})

    # ---------------------------------------------------------- bookkeeping
    def _log_train(self, window, optimizer, epoch, bar):
        elapsed = max(1e-9, time.perf_counter() - window["t0"])
        metrics = {
            "step": self.step, "epoch": epoch + 1,
            "train/loss": window["loss"] / max(1, window["batches"]),
            "lr": optimizer.param_groups[0]["lr"],
            "samples_per_s": window["samples"] / elapsed,
            "tokens_per_s": window["tokens"] / elapsed,
        }
        bar.set_postfix(loss=f"{metrics['train/loss']:.4f}")
        self._record(metrics)
        window.update(loss=0.0, batches=0, samples=0, tokens=0, t0=time.perf_counter())

    def _record(self, metrics):
        """Append to ``metrics.jsonl`` (flushed per line) and call the logger hook."""
        self.history.append(metrics)
        with open(os.path.join(self.run_dir, "metrics.jsonl"), "a", encoding="utf-8") as fh:
            fh.write(json.dumps(metrics) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.hook.taskbert_log_metrics(trainer=self, step=self.step, metrics=metrics)

    def _save_checkpoint(self, epoch, batch_pos, stale):
        state = {"step": self.step, "epoch": epoch, "batch_pos": batch_pos, "stale": stale,
                 "best_value": self.best_value, "best_step": self.best_step,
                 "metrics_lines": len(self.history), "total_steps": self.total_steps}
        ckpt.save_training_state(os.path.join(self.run_dir, "checkpoint"), self.model,
                                 self.optimizer, self.scheduler, state, rng_state())

    def _restore(self, optimizer, scheduler):
        folder = os.path.join(self.run_dir, "checkpoint")
        state, rng = ckpt.load_training_state(folder, self.model, optimizer, scheduler)
        set_rng_state(rng)
        self.step, self.best_value, self.best_step = state["step"], state["best_value"], state["best_step"]
        path = os.path.join(self.run_dir, "metrics.jsonl")
        if os.path.exists(path):  # drop lines logged after the checkpoint was written
            with open(path, encoding="utf-8") as fh:
                lines = [ln for ln in fh.read().splitlines() if ln.strip()][:state["metrics_lines"]]
            ckpt.atomic_write(path, "".join(ln + "\n" for ln in lines))
            self.history = [json.loads(ln) for ln in lines]
        tqdm.write(f"resumed from step {self.step} (epoch {state['epoch'] + 1})")
        return state["epoch"], state["batch_pos"], state["stale"]

    def _finish(self):
        """Reload ``best/``, evaluate it on every split with gold labels, write predictions."""
        best = os.path.join(self.run_dir, "best")
        if os.path.isdir(best):
            ckpt.load_head_state(best, self.model.head, ckpt.model_state_prefix(self.model))
            ckpt.load_encoder_state(best, self.model)
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
        if lines:
            ckpt.atomic_write(os.path.join(self.run_dir, "predictions.jsonl"), "\n".join(lines) + "\n")
        if final:
            final.update(step=self.step, best_step=self.best_step, final=True)
            self._record(final)
        self.hook.taskbert_train_end(trainer=self, metrics=final)
        return final


def run_inference(model, task, rows, batch_size, pad_id, device, amp_dtype=None, desc="predicting"):
    """Run ``model`` over ``rows`` in length-sorted batches; return (per-row results in
    row order, mean loss or None)."""
    results = [None] * len(rows)
    lengths = [len(r["input_ids"]) for r in rows]
    total_loss, n_loss = 0.0, 0
    with torch.inference_mode():
        for idx in tqdm(eval_batches(lengths, batch_size), desc=desc, unit="batch",
                        leave=False, dynamic_ncols=True, disable=None):
            batch = to_device(collate([rows[i] for i in idx], pad_id, task.pad_fields), device)
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                out = model(batch)
                try:
                    loss = task.loss(out, batch)
                except (KeyError, TypeError):
                    loss = None
            if loss is not None and torch.isfinite(loss):
                total_loss += loss.item() * len(idx)
                n_loss += len(idx)
            for i, res in zip(idx, task.collect(out, batch)):
                results[i] = res
    return results, (total_loss / n_loss if n_loss else None)
