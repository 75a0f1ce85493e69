"""Data-parallel training on an existing launcher: ``torchrun`` or ``accelerate launch``.

The launcher starts one process per device and sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`setup` reads them and joins the
process group (NCCL on GPUs, gloo on CPUs). Without them every helper here is a no-op for
one process, and a one-process run takes exactly the code path it always did.

The semantics (docs/reliability.md, "Multi-process and multi-node training"):

* ``train.batch_size`` is the global batch. Every batch of the one-process schedule is
  dealt out row by row (rank r takes rows r, r+W, r+2W ... of it), so a spec makes the same
  optimizer steps, in the same order, on any number of processes.
* A rank's loss is weighted by its share of the rows (``n_r * W / n``): DDP averages the
  ranks' gradients, so the result is the gradient of the mean loss over the whole batch.
* Evaluation batches are dealt out whole (batch i to rank i mod W) and the per-row results
  are gathered by row index: nothing is padded, no row is counted twice.
"""

import os
from contextlib import nullcontext

import torch

from ..data.batching import units


class World:
    """Where this process stands: ``rank``, ``world`` size, ``local_rank`` and ``device``."""

    def __init__(self, rank=0, world=1, local_rank=0, device=None):
        self.rank, self.world, self.local_rank = rank, world, local_rank
        self.device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")

    @property
    def enabled(self):
        """True when more than one process trains."""
        return self.world > 1

    @property
    def is_main(self):
        """Only the main process (rank 0) writes files, logs and progress bars."""
        return self.rank == 0

    def shard(self, indices, groups=None):
        """This rank's rows of a global batch: every W-th, starting at the rank (ranks get
        rows of similar length, since batches are sorted by length); with ``groups`` every
        W-th group of rows (a whole example's windows), so no example is split over ranks."""
        if not self.enabled:
            return list(indices)
        if groups is None:
            return list(indices[self.rank::self.world])
        return [i for unit in units(indices, groups)[self.rank::self.world] for i in unit]

    def sum(self, values):
        """Element-wise sum of a list of numbers over all ranks (float64)."""
        if not self.enabled:
            return list(values)
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def gather(self, obj):
        """``[obj of rank 0, obj of rank 1, ...]`` on every rank (pickled; small things)."""
        if not self.enabled:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def barrier(self):
        """Wait for every rank (e.g. before reading a folder rank 0 wrote)."""
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    def wrap(self, model, probe=None):
        """The model to train: DDP around it with several ranks, itself otherwise.

        ``probe()`` runs one forward and backward pass (RNG states are put back after it):
        parameters it leaves without a gradient (a tagger never calls the pooler) make
        DDP look for unused parameters at every step; without them it need not.
        """
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel

        unused = True
        if probe is not None:
            with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
                probe()
            unused = any(p.requires_grad and p.grad is None for p in model.parameters())
            model.zero_grad(set_to_none=True)
        ids = [self.local_rank] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=unused)

    def no_sync(self, model, sync):
        """Skip DDP's gradient all-reduce on accumulation micro-batches (``sync`` False)."""
        if self.enabled and not sync:
            return model.no_sync()
        return nullcontext()


def launched_world_size():
    """``WORLD_SIZE`` set by torchrun / accelerate launch (1 when run directly)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def setup():
    """Join the launcher's process group (once) and return this process's :class:`World`."""
    world = launched_world_size()
    if world <= 1:
        return World()
    import torch.distributed as dist

    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device, backend = torch.device("cuda", local_rank), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return World(rank, world, local_rank, device)


def teardown(wait=True):
    """Leave the process group (a no-op for one process).

    Every rank waits for the others first, so none tears its gloo threads down while another
    still talks to it: without the barrier a rank that finished early sometimes died at exit
    ("terminate called without an active exception", SIGABRT) after a complete run, about one
    torchrun test in seven on a 2-core CPU. A failing rank passes ``wait=False`` (its peers
    would wait for it in vain)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()
