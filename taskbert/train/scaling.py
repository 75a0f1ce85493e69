"""Loss scaling for fp16 autocast (``train.precision: fp16``, or ``auto`` on a GPU without bf16),
and the finiteness checks of the steps, left to the log steps on a GPU (:class:`DeferredChecks`).

fp16 holds numbers down to about 6e-8: small gradients of a BERT underflow to zero unless the
loss is scaled up before ``backward`` and the gradients scaled back down before the step.
``torch.amp.GradScaler`` does that and adapts the scale: an overflow (an inf or NaN
gradient) skips that step and halves the scale; 2,000 good steps in a row double it. In fp16
a gradient overflow is expected now and then, so it is not the failed run it is in fp32 or
bf16 (there the loop stops on a non-finite gradient); a loss that is not finite still stops
the run, in every precision. bf16 has fp32's range and needs no scaling.
"""

import warnings

import torch

from .optim import clipped_step


class LossScaler:
    """``backward`` and the optimizer ``step`` of the loop, with a GradScaler in fp16 and
    without one otherwise (then exactly what the loop did before: :func:`~.optim.clipped_step`)."""

    def __init__(self, amp_dtype, device):
        self.scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None
        self.skipped = 0   # steps skipped for an overflow (fp16 only)

    def backward(self, loss):
        """``loss.backward()``, the loss scaled first in fp16."""
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def step(self, optimizer, max_grad_norm, bad=None):
        """Clip (``max_grad_norm``, None: no clipping) and step; returns ``(norm, skipped)``:
        the gradient norm before clipping (None when not computed) and whether the step was
        skipped for an fp16 overflow. Without a scaler a non-finite norm returns before any
        update (the caller fails the run); with ``bad`` (no scaler: see :class:`DeferredChecks`)
        the device skips a bad update and nothing is read back."""
        if self.scaler is None:
            if bad is not None:
                return clipped_step(optimizer, max_grad_norm, bad), False
            if max_grad_norm:
                return clipped_step(optimizer, max_grad_norm), False
            optimizer.step()
            return None, False
        self.scaler.unscale_(optimizer)   # the gradients as they are; unscale_ records any overflow
        if max_grad_norm:   # as without a scaler (no update when the norm is not finite)
            norm = clipped_step(optimizer, max_grad_norm)
        else:
            norm = torch.nn.utils.get_total_norm(
                [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None])
            if torch.isfinite(norm):
                optimizer.step()
        skipped = not bool(torch.isfinite(norm))   # an overflow: no update, and the scale halves
        self.scaler.update()
        self.skipped += skipped
        return norm, skipped

    @staticmethod
    def schedule(scheduler, skipped):
        """``scheduler.step()``: the schedule moves on after a skipped step too (the step count
        is the run's), without torch's warning that the optimizer did not step first."""
        with warnings.catch_warnings():
            if skipped:
                warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
            scheduler.step()

    def state_dict(self):
        """The scaler's state (scale, growth tracker) and the skipped count, for checkpoints;
        None without a scaler."""
        if self.scaler is None:
            return None
        return {"scaler": self.scaler.state_dict(), "skipped": self.skipped}

    def load_state_dict(self, state):
        """Restore :meth:`state_dict` (a checkpoint without one leaves the fresh scaler)."""
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state["scaler"])
            self.skipped = state.get("skipped", 0)


def defers(device, world, scaling, optimizer):
    """Whether the loop leaves its checks to the log steps (:class:`DeferredChecks`)."""
    return device.type == "cuda" and not world.enabled and scaling.scaler is None \
        and bool(optimizer.defaults.get("fused"))


class DeferredChecks:
    """The steps' losses and finiteness checks, read back from a GPU only when the loop logs,
    evaluates or saves.

    Reading a number off a GPU (``loss.item()``, ``if not torch.isfinite(norm)``) makes the
    host wait for the device, so it cannot prepare the next batch meanwhile. Where the update
    of a bad step can be skipped on the device instead (the fused AdamW's ``found_inf``
    input), with one process and no fp16 loss scaling (whose skips the host reads),
    ``deferred`` is True on CUDA: each step adds its loss on the device and marks the first step
    whose loss or gradient norm was not finite; :meth:`read` gives both back. Elsewhere (a CPU,
    where a read costs nothing; other devices; DDP; fp16) the loop checks every step itself.
    """

    def __init__(self, device, world, scaling, optimizer):
        self.deferred = defers(device, world, scaling, optimizer)
        self.loss = self.bad_step = None

    @staticmethod
    def flag(loss):
        """A bool on the device: the step's ``loss`` is not finite (its update is skipped)."""
        return ~torch.isfinite(loss)

    def record(self, loss, norm, bad, step):
        """Add step ``step``'s ``loss``; mark it when ``bad`` is set or ``norm`` is not finite."""
        here = torch.where(bad | ~torch.isfinite(norm), step, 0)
        if self.loss is None:
            self.loss, self.bad_step = loss.float(), here
        else:
            self.loss = self.loss + loss.float()
            self.bad_step = torch.where(self.bad_step > 0, self.bad_step, here)

    def read(self):
        """``(sum of the losses recorded, first bad step or 0)``, then forget them (one wait)."""
        if self.loss is None:
            return 0.0, 0
        loss, bad = torch.stack([self.loss, self.bad_step.to(self.loss.dtype)]).tolist()
        self.loss = self.bad_step = None
        return loss, int(bad)
