"""The GPU side of the benchmark (``python -m bench.run --device cuda``): step timing that waits
for the GPU, peak GPU memory, and the ``--device`` checks; the bf16 matmul peak a GPU run's MFU
divides by is :func:`bench.common.measure_matmul_peak` with ``device="cuda"``. Nothing here has
run on a GPU yet (docs/speed.md, "On a GPU")."""

import sys


def device_sync() -> None:
    """Wait for the GPU's queued work when this process has used CUDA (a step timer reads the
    clock after it, or it would time the launches, not the work); nothing on a CPU."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def timed_edges(excluded: int, max_steps: int) -> set[int]:
    """The steps after which a step timer waits for the GPU: the end of the excluded warm-up
    steps and the last step, the two clock reads the throughput is taken between. Waiting at
    every step would add a read of the device per step to both sides' loops (taskbert's own
    loop reads it only when it logs); on a CPU :func:`device_sync` does nothing anyway."""
    return {excluded, max_steps} - {0}


def row_record(mask):
    """What a meter keeps of a training batch's ``attention_mask``: ``(rows, real tokens per
    row, on the device, seq)``, read back only by :func:`token_records` after training."""
    return mask.shape[0], mask.sum(dim=1), mask.shape[1]


def token_records(raw) -> list[tuple[int, int, int, int, int]]:
    """``(rows, real tokens, padded tokens, sum of squared row lengths, rows * seq²)`` per
    :func:`row_record`."""
    out = []
    for rows, lens, seq in raw:
        lens = lens.long()
        out.append((rows, int(lens.sum()), rows * seq, int((lens * lens).sum()), rows * seq * seq))
    return out


def peak_gpu_mb() -> float | None:
    """The most GPU memory this process's tensors held, in MiB (``max_memory_allocated``);
    None when it has not used CUDA."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**20
    return None


def device_env(device: str) -> dict[str, str]:
    """Environment for a benchmark worker: on ``cpu`` CUDA is hidden, so that taskbert (which
    takes a GPU when it sees one) and the Trainer both run on the CPU of a GPU machine."""
    return {"CUDA_VISIBLE_DEVICES": ""} if device == "cpu" else {}


def taskbert_precision(args, mode):
    """``train.precision`` of a taskbert configuration: on CUDA its default, ``auto`` (bf16
    where the GPU has it), against the Trainer's ``bf16=True``; on a CPU fp32 unless the mode
    is a ``_bf16`` one."""
    if args.device == "cuda":
        return "auto"
    return "bf16" if mode.endswith("_bf16") else "fp32"


def check_device(args):
    """``--device cuda`` needs a GPU torch can see, and replaces ``--bf16`` (both sides train in
    bf16 on CUDA): one line on stderr and exit 2 otherwise."""
    import torch

    if args.device != "cuda":
        return
    why = None
    if not torch.cuda.is_available():
        why = f"no CUDA device is visible to torch {torch.__version__}; use --device cpu"
    elif args.bf16:
        why = "--bf16 is for a CPU; on CUDA both sides train in bf16 already; leave --bf16 out"
    if why:
        print(f"bench.run: --device cuda: {why}", file=sys.stderr)
        raise SystemExit(2)
