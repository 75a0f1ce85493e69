"""Helpers shared by the benchmark sides: hardware peak, memory, FLOPs, subprocess workers, data.

Everything here is framework-neutral so that the Hugging Face baseline (`bench.hf_baseline`)
and the taskbert side measure speed, memory and model FLOPs the same way.
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- hardware / memory


#: per device: dtype, default n, warm-up calls, matmuls between two reads of the clock. On CUDA
#: kernels run asynchronously, so each burst ends with a ``synchronize`` before the clock is read;
#: n is large so that the tensor cores, not the launch overhead, set the rate; the warm-up lets
#: cuBLAS pick its kernel and the clocks ramp up (on a CPU: allocation and MKL/oneDNN dispatch).
MATMUL_PEAK = {"cpu": ("float32", 2048, 2, 1), "cuda": ("bfloat16", 8192, 3, 10)}


def measure_matmul_peak(threads: int | None = None, seconds: float = 3.0, n: int | None = None,
                        device: str = "cpu") -> float:
    """Return the ``torch.matmul`` throughput in GFLOP/s for an ``n x n`` square product: fp32
    on the CPU (n 2048), bf16 on the current CUDA device with ``device="cuda"`` (n 8192).

    Uses torch's current thread count, or ``threads`` for the duration of the call (restored
    afterwards). The time budget is split into chunks of about 0.5 s and the best chunk's rate
    is returned: this is a *peak*, the denominator of MFU, so a chunk slowed by a background
    process should not drag it down.
    """
    import torch

    dtype_name, default_n, warmup, burst = MATMUL_PEAK[device]
    n = default_n if n is None else n
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        dtype = getattr(torch, dtype_name)
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        out = torch.empty(n, n, device=device, dtype=dtype)
        for _ in range(warmup):
            torch.matmul(a, b, out=out)
        sync()
        flops_per_mm = 2.0 * n**3
        best = 0.0
        deadline = time.perf_counter() + seconds
        while True:
            t0 = time.perf_counter()
            iters = 0
            while time.perf_counter() - t0 < 0.5:
                for _ in range(burst):
                    torch.matmul(a, b, out=out)
                iters += burst
                sync()
            rate = flops_per_mm * iters / (time.perf_counter() - t0) / 1e9
            best = max(best, rate)
            if time.perf_counter() >= deadline:
                return best
    finally:
        torch.set_num_threads(old_threads)


def cpu_model(path: str = "/proc/cpuinfo") -> str:
    """The CPU's model name from /proc/cpuinfo, with ``AMX`` or ``bf16`` when it has those units
    (they decide what bf16 autocast costs); ``CPU`` where /proc/cpuinfo is missing."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError:
        return "CPU"
    fields = {}   # the first CPU's lines: "key<TAB>: value"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    name, flags = fields.get("model name") or "CPU", set(fields.get("flags", "").split())
    units = "AMX bf16" if "amx_bf16" in flags else "AVX-512 bf16" if "avx512_bf16" in flags else "no bf16 units"
    return f"{name} ({units})"


def peak_rss_mb() -> float:
    """Peak resident set size of *this process* so far, in MiB (``ru_maxrss``).

    The kernel only keeps a high-water mark per process, so two configurations measured in the
    same process report the larger of the two. Measure each in its own subprocess
    (see :func:`run_in_subprocess`).
    """
    # Linux keeps ru_maxrss across fork+exec, so a worker would report at least its parent's
    # size; VmHWM belongs to this process's own address space and starts afresh at exec.
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def cpu_busy_fraction(interval: float = 1.0) -> float:
    """Fraction of all CPU time spent busy (any process) over ``interval`` seconds, from /proc/stat.

    Returns 0.0 where /proc/stat does not exist. On a shared 2-core box one other busy process
    oversubscribes torch's OpenMP threads and can slow a run several-fold, so check this first.
    """
    def snap() -> tuple[int, int]:
        with open("/proc/stat") as fh:
            vals = [int(v) for v in fh.readline().split()[1:]]
        idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
        return sum(vals), idle

    if not os.path.exists("/proc/stat"):
        return 0.0
    t1, i1 = snap()
    time.sleep(interval)
    t2, i2 = snap()
    return 0.0 if t2 == t1 else 1.0 - (i2 - i1) / (t2 - t1)


def wait_for_idle(max_busy: float = 0.2, timeout: float = 300.0, interval: float = 2.0) -> float:
    """Block until the machine's CPU is at most ``max_busy`` busy (or ``timeout`` s pass).

    Returns the last busy fraction seen, so a caller can record how quiet the box was.
    """
    deadline = time.monotonic() + timeout
    while True:
        busy = cpu_busy_fraction(interval)
        if busy <= max_busy or time.monotonic() >= deadline:
            return busy


def timed_median(fn, repeats: int = 5):
    """Call ``fn()`` ``repeats`` times; return (median wall seconds, the matching CPU seconds,
    the last result). Single calls of a few seconds varied by up to ±25% in one process on a
    shared VM; the median damps that. It does not remove the variation between processes
    (whole runs moved by up to 18%), and both sides of a comparison use it alike."""
    runs = []
    for _ in range(max(1, repeats)):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        runs.append((time.perf_counter() - t, time.process_time() - c))
    runs.sort()
    wall, cpu = runs[len(runs) // 2]
    return wall, cpu, out


# --------------------------------------------------------------------------- FLOPs


def count_nonembedding_params(model) -> int:
    """Number of parameters outside ``nn.Embedding`` modules (word, position, token-type tables).

    Embedding lookups cost no matmul FLOPs, so the ``6 * N * tokens`` rule uses this count.
    The task head and pooler are included: they are real matmuls (tiny for MiniLM).
    """
    import torch

    emb = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in emb)


def train_flops(
    num_params_nonembedding: int,
    layers: int,
    hidden: int,
    real_tokens: int,
    seq_lens: list[int] | None = None,
    sum_len_sq: int | None = None,
) -> float:
    """Model FLOPs of one training pass (forward + backward) over some sequences.

    Formula (Kaplan et al. 2020 / PaLM appendix B, encoder without causal mask)::

        flops = 6 * N_nonembed * real_tokens  +  12 * layers * hidden * sum(L_i ** 2)

    * ``6 * N * T``: every weight does one multiply-add (2 FLOPs) per token forward, and the
      backward pass costs twice the forward (grads w.r.t. activations and w.r.t. weights).
    * Attention scores ``Q K^T`` and the weighted sum ``A V`` are each ``2 * L^2 * hidden``
      FLOPs per layer forward for a sequence of length ``L``; times 3 for training gives
      ``12 * layers * hidden * L^2`` (written ``6 * 2 * layers * hidden * L^2``).

    Pass the *real* (non-pad) lengths to get useful "model FLOPs" for MFU: work spent on pad
    tokens is waste and must not count as utilisation. Give either ``seq_lens`` or their
    precomputed ``sum_len_sq``. Softmax, layer norm and other element-wise work are ignored.
    """
    if sum_len_sq is None:
        sum_len_sq = sum(l * l for l in (seq_lens or []))
    return 6.0 * num_params_nonembedding * real_tokens + 12.0 * layers * hidden * sum_len_sq


def inference_flops(num_params_nonembedding: int, layers: int, hidden: int, real_tokens: int,
                    sum_len_sq: int) -> float:
    """Forward-only model FLOPs: one third of :func:`train_flops` (``2*N*T + 4*layers*hidden*sum L^2``)."""
    return train_flops(num_params_nonembedding, layers, hidden, real_tokens, sum_len_sq=sum_len_sq) / 3.0


# --------------------------------------------------------------------------- subprocess workers


def run_in_subprocess(module: str, func_name: str, kwargs: dict[str, Any], timeout: float | None = None,
                      env: dict[str, str] | None = None) -> dict:
    """Run ``python -m <module> --worker <func_name> --kwargs-json @<file>`` and return its JSON result.

    Each configuration gets a fresh process, hence its own peak-RSS reading and no warm caches
    from earlier runs. The kwargs travel through a temp file (the ``@`` form) because a few
    thousand sentences exceed Linux's 128 KiB limit on a single argv string. The worker must
    print its result as JSON on the last line of stdout; anything printed before is ignored.
    """
    child_env = dict(os.environ)
    child_env.setdefault("HF_HUB_OFFLINE", "1")
    child_env.setdefault("TOKENIZERS_PARALLELISM", "false")
    child_env.update(env or {})
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(kwargs, fh)
        kw_path = fh.name
    try:
        proc = subprocess.run(
            [sys.executable, "-m", module, "--worker", func_name, "--kwargs-json", "@" + kw_path],
            cwd=REPO_ROOT, env=child_env, capture_output=True, text=True, timeout=timeout,
        )
    finally:
        os.unlink(kw_path)
    lines = [l for l in proc.stdout.splitlines() if l.strip()]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"worker {module}.{func_name} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
        )
    return json.loads(lines[-1])


def worker_main(namespace: dict[str, Any], argv: list[str] | None = None) -> bool:
    """Serve ``--worker NAME --kwargs-json JSON|@FILE`` for a module; returns False if not a worker call.

    ``namespace`` is the calling module's ``globals()``; only public functions may be called.
    The result is printed as one JSON line, last on stdout.
    """
    import argparse

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--worker")
    parser.add_argument("--kwargs-json", default="{}")
    args, _ = parser.parse_known_args(argv)
    if not args.worker:
        return False
    func = namespace.get(args.worker)
    if args.worker.startswith("_") or not callable(func):
        raise SystemExit(f"--worker: unknown function {args.worker!r}")
    raw = args.kwargs_json
    if raw.startswith("@"):
        raw = Path(raw[1:]).read_text()
    result = func(**json.loads(raw))
    sys.stdout.flush()
    print(json.dumps(result), flush=True)
    return True


# --------------------------------------------------------------------------- quick data

_POS = ["wonderful", "moving", "sharp", "funny", "gripping", "beautiful", "clever", "warm", "superb"]
_NEG = ["dull", "clumsy", "tedious", "flat", "lifeless", "confused", "bland", "shallow", "awful"]
_FILL = ("the film its story cast script director plot pacing and but with a an of this that "
         "performance scenes camera music ending characters while never quite yet again still").split()


def _read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_sentiment(n_train: int = 2000, n_eval: int = 500, seed: int = 13):
    """Return ``(train_texts, train_labels, eval_texts, eval_labels, source)`` for a sentiment benchmark.

    Reads ``data/sentiment/{train,validation}.jsonl`` (``{"text", "label"}``, written by
    ``scripts/prepare_data.py``) when present; otherwise synthesises review-like sentences of
    4-60 words, so the length spread (which decides how much padding costs) stays realistic.
    ``source`` says which was used: ``"data/sentiment"`` or ``"synthetic"``.
    """
    d = REPO_ROOT / "data" / "sentiment"
    if (d / "train.jsonl").exists():
        tr = _read_jsonl(d / "train.jsonl")[:n_train]
        ev_file = d / "validation.jsonl" if (d / "validation.jsonl").exists() else d / "test.jsonl"
        ev = _read_jsonl(ev_file)[:n_eval]
        return ([r["text"] for r in tr], [r["label"] for r in tr],
                [r["text"] for r in ev], [r["label"] for r in ev], "data/sentiment")
    rng = random.Random(seed)

    def one() -> tuple[str, int]:
        label = rng.randint(0, 1)
        # Long-tailed lengths like real review snippets: mostly short, some long.
        n = min(60, max(4, int(rng.lognormvariate(2.8, 0.5))))
        words = [rng.choice(_FILL) for _ in range(n)]
        for _ in range(max(1, n // 8)):
            words[rng.randrange(n)] = rng.choice(_POS if label else _NEG)
        return " ".join(words).capitalize() + ".", label

    tr = [one() for _ in range(n_train)]
    ev = [one() for _ in range(n_eval)]
    return ([t for t, _ in tr], [l for _, l in tr], [t for t, _ in ev], [l for _, l in ev], "synthetic")


def synthetic_ner(n: int, seed: int = 13) -> tuple[list[list[str]], list[list[str]]]:
    """Return ``(word_lists, tag_lists)``: tweet-like sentences with BIO ``person``/``geo-loc`` tags.

    Only for a quick token-classification smoke run; real benchmarks should read WNUT-16.
    """
    rng = random.Random(seed)
    people = [["john", "smith"], ["mary"], ["ada", "lovelace"], ["bob"]]
    places = [["new", "york"], ["paris"], ["los", "angeles"], ["berlin"]]
    words_out, tags_out = [], []
    for _ in range(n):
        words, tags = [], []
        for _ in range(min(40, max(3, int(rng.lognormvariate(2.5, 0.5))))):
            r = rng.random()
            if r < 0.16:  # 8% people, 8% places
                ent, typ = (rng.choice(people), "person") if r < 0.08 else (rng.choice(places), "geo-loc")
                words += ent
                tags += [f"B-{typ}"] + [f"I-{typ}"] * (len(ent) - 1)
            else:
                words.append(rng.choice(_FILL))
                tags.append("O")
        words_out.append(words)
        tags_out.append(tags)
    return words_out, tags_out
