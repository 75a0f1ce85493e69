"""The taskbert side of the speed benchmark: ``taskbert run`` fine-tuning and ``taskbert predict``.

Measured exactly as :mod:`bench.hf_baseline` measures the ``Trainer``, so the two sides compare:

* a small in-process plugin (:class:`_StepMeter`) is registered on the plugin manager; its
  ``taskbert_train_start`` hook puts a forward pre-hook on the model (samples, real and padded
  tokens of every *training* forward) and an optimizer step post-hook (wall and CPU time at the
  end of every optimizer step);
* timing covers only steady steps: from the end of step ``warmup_steps_excluded`` to the end of
  the last step, the same window as the Hugging Face side's ``on_step_end`` callback;
* model FLOPs on real tokens come from :func:`bench.common.train_flops`.

The training data travels as the same Python lists the HF side gets; they are written to a
temporary folder in the file formats the task reads (jsonl, CoNLL) and run through a normal spec,
so the whole taskbert path (reader, task encode, bucketing, loop) is what gets timed.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench import common, gpu  # noqa: E402
from bench.common import count_nonembedding_params, peak_rss_mb, train_flops  # noqa: E402

TASKS = {"classification": "sentence_classification", "token_classification": "token_classification"}


def run_in_subprocess(func_name: str, kwargs: dict[str, Any], timeout: float | None = None,
                      env: dict[str, str] | None = None) -> dict:
    """Call ``func_name(**kwargs)`` of this module in a fresh Python process; return its result dict."""
    return common.run_in_subprocess("bench.taskbert_side", func_name, kwargs, timeout=timeout, env=env)


from taskbert import hookimpl  # noqa: E402


class _StepMeter:
    """Plugin object: per-step wall/CPU times and per-forward token counts of a taskbert run."""

    def __init__(self, edges):
        self.edges = edges   # the steps after which to wait for the GPU (gpu.timed_edges)
        self.times: list[float] = []
        self.cpu: list[float] = []
        self.records: list[tuple[int, int, int, int, int]] = []
        self.t0 = self.cpu0 = None
        self.model = None

    def _forward(self, module, args, kwargs):
        if not module.training:  # evaluation passes are not part of the timed steps
            return
        mask = (args[0] if args else kwargs["batch"])["attention_mask"]
        self.records.append(gpu.row_record(mask))   # read back after training: gpu.token_records

    def _step(self, optimizer, args, kwargs):
        if len(self.times) + 1 in self.edges:
            gpu.device_sync()   # on a GPU: the step's kernels have run
        self.times.append(time.perf_counter())
        self.cpu.append(time.process_time())

    @hookimpl
    def taskbert_train_start(self, trainer):
        """Attach the meters; the loop starts right after this hook returns."""
        self.model = trainer.model
        trainer.model.register_forward_pre_hook(self._forward, with_kwargs=True)
        trainer.optimizer.register_step_post_hook(self._step)
        self.t0, self.cpu0 = time.perf_counter(), time.process_time()


def _write_data(folder: str, task: str, texts: list, labels: list, name: str) -> str:
    """Write one split where the task's reader expects it: jsonl or CoNLL ``token<TAB>tag``."""
    if task == "classification":
        path = os.path.join(folder, f"{name}.jsonl")
        with open(path, "w", encoding="utf-8") as fh:
            for t, l in zip(texts, labels):
                fh.write(json.dumps({"text": t, "label": str(l)}) + "\n")
        return path
    path = os.path.join(folder, f"{name}.txt")
    with open(path, "w", encoding="utf-8") as fh:
        for words, tags in zip(texts, labels):
            fh.write("".join(f"{w}\t{t}\n" for w, t in zip(words, tags)) + "\n")
    return path


def _run_spec(task, train_texts, train_labels, eval_texts, eval_labels, model, max_length,
              batch_size, lr, max_steps, seed, warmup_ratio, save_dir, weight_decay, threads,
              precision):
    """Write the data, build the spec, run it; return (final metrics, wall seconds, start time)."""
    from taskbert.run import execute
    from taskbert.config.spec import spec_from_dict

    with tempfile.TemporaryDirectory(prefix="tb_bench_") as tmp:
        data = {"train": _write_data(tmp, task, train_texts, train_labels, "train"),
                "validation": _write_data(tmp, task, eval_texts, eval_labels, "validation")}
        if task == "token_classification":
            data.update(format="conll", reader_options={"token_column": 0, "label_column": -1,
                                                        "separator": "\t"})
        options = ({"scheme": "IOB2", "subword_labels": "first", "word_pooling": "first",
                    "unseen_labels": "ignore"}  # the HF side scores such tags as always wrong too
                   if task == "token_classification" else {})
        raw = {"task": TASKS[task], "encoder": {"model": model, "max_length": max_length},
               "data": data, "task_options": options,
               "train": {"max_steps": max_steps, "batch_size": batch_size, "lr": lr,
                         "warmup": warmup_ratio, "seed": seed, "weight_decay": weight_decay,
                         "max_grad_norm": 1.0, "eval_every": max_steps, "log_every": max_steps,
                         "precision": precision, "loggers": [], "threads": threads,
                         "metric": "f1" if task == "token_classification" else "accuracy"},
               "output": save_dir or os.path.join(tmp, "run")}
        spec = spec_from_dict(raw, os.path.join(tmp, "spec.yaml"))
        t0 = time.perf_counter()
        final = execute(spec, overwrite=True)
        return final, time.perf_counter() - t0, t0


def train_taskbert(
    task: str, train_texts: list, train_labels: list, eval_texts: list, eval_labels: list,
    model: str = "minilm-l6", max_length: int = 128, batch_size: int = 32, lr: float = 5e-5,
    max_steps: int = 100, seed: int = 13, warmup_ratio: float = 0.1, warmup_steps_excluded: int = 5,
    peak_gflops: float | None = None, save_dir: str | None = None, weight_decay: float = 0.0,
    threads: int | None = None, precision: str = "fp32",
) -> dict:
    """Fine-tune through a taskbert spec and return the same figures as ``hf_baseline.train_hf``.

    Hyperparameters default to the HF side's (``weight_decay`` 0.0 is the ``Trainer``'s default;
    taskbert's own default is 0.01; ``precision`` is ``train.precision``, fp32 as the Trainer's
    default unless asked). ``save_dir`` becomes the run folder (its ``best/`` is the
    final model: evaluation happens only after the last step). Returns ``samples_per_s``,
    ``real_tokens_per_s``, ``padded_tokens_per_s``, ``padding_efficiency``, ``mfu``,
    ``cpu_share``, ``step_s_median``, ``accuracy`` (``f1`` for token classification),
    ``peak_rss_mb`` and the other keys ``train_hf`` gives.
    """
    import torch

    from taskbert.plugins import get_plugin_manager

    if task not in TASKS:
        raise ValueError(f"task={task!r}; expected one of {', '.join(TASKS)}")
    t_setup = time.perf_counter()
    meter = _StepMeter(gpu.timed_edges(max(0, min(warmup_steps_excluded, max_steps - 1)), max_steps))
    pm = get_plugin_manager()
    pm.register(meter, name="bench-step-meter")
    try:
        final, wall, t0 = _run_spec(task, train_texts, train_labels, eval_texts, eval_labels, model,
                                    max_length, batch_size, lr, max_steps, seed, warmup_ratio,
                                    save_dir, weight_decay, threads, precision)
    finally:  # a caller running this in-process keeps a clean plugin manager
        pm.unregister(meter)
    setup_s = (meter.t0 or t0) - t_setup
    steps = len(meter.times)
    if len(meter.records) != steps:  # one forward per step: no gradient accumulation here
        raise RuntimeError(f"saw {len(meter.records)} training forwards for {steps} steps")
    k = max(0, min(warmup_steps_excluded, steps - 1))
    seconds = meter.times[-1] - (meter.times[k - 1] if k > 0 else meter.t0)
    cpu_seconds = meter.cpu[-1] - (meter.cpu[k - 1] if k > 0 else meter.cpu0)
    window = gpu.token_records(meter.records[k:steps])
    samples, real, padded = (sum(r[i] for r in window) for i in range(3))
    cfg = meter.model.encoder.config
    n_nonemb = count_nonembedding_params(meter.model)
    flops = train_flops(n_nonemb, cfg.num_hidden_layers, cfg.hidden_size, real,
                        sum_len_sq=sum(r[3] for r in window))
    padded_flops = train_flops(n_nonemb, cfg.num_hidden_layers, cfg.hidden_size, padded,
                               sum_len_sq=sum(r[4] for r in window))
    timed = len(window)
    gflops = flops / seconds / 1e9
    starts = ([meter.t0] + meter.times)[k:steps]
    step_s = sorted(e - b for b, e in zip(starts, meter.times[k:steps]))
    threads_now = torch.get_num_threads()
    return {
        "mode": "taskbert", "task": task, "precision": precision, "threads": threads_now, "batch_size": batch_size,
        "max_length": max_length, "steps": steps, "timed_steps": timed, "seconds": seconds,
        "samples_per_s": samples / seconds, "real_tokens_per_s": real / seconds,
        "padded_tokens_per_s": padded / seconds,
        "padding_efficiency": real / padded if padded else None,
        "flops_per_step": flops / timed, "padded_flops_per_step": padded_flops / timed,
        "model_gflops_per_s": gflops, "mfu": gflops / peak_gflops if peak_gflops else None,
        "nonembedding_params": n_nonemb, "cpu_seconds": cpu_seconds,
        "cpu_share": cpu_seconds / (seconds * threads_now),  # as in train_hf: ~1 on an idle box
        "train_wall_s": wall, "setup_s": setup_s,
        "step_s_median": step_s[len(step_s) // 2] if step_s else None,
        "accuracy": final.get("validation/accuracy"), "f1": final.get("validation/f1"),
        "peak_rss_mb": peak_rss_mb(), "peak_gpu_mb": gpu.peak_gpu_mb(), "loadavg_1m": os.getloadavg()[0],
    }


def predict_taskbert(run_dir: str, texts: list[str], batch_size: int = 32, warmup: int = 32,
                     quantize: bool = False, repeats: int = 5) -> dict:
    """Time ``taskbert predict``'s path (``load_run`` + ``predict_examples``) over ``texts``.

    Mirrors ``hf_baseline.predict_hf_pipeline``: ``warmup`` texts run once untimed, then every
    text in one timed call (tokenization, batching, model and decoding all inside the timer),
    ``repeats`` times, the median counting.
    ``quantize`` applies ``torch.ao.quantization.quantize_dynamic`` (int8 ``nn.Linear``) to the
    loaded model first. Returns ``sentences_per_s``, ``seconds``, ``load_s``, ``cpu_share``,
    ``labels`` (in input order), ``n``, ``peak_rss_mb``.
    """
    import torch

    from taskbert.cli.runs import load_run, predict_examples

    t0 = time.perf_counter()
    loaded = load_run(run_dir)
    if quantize:
        loaded.model = torch.ao.quantization.quantize_dynamic(loaded.model, {torch.nn.Linear},
                                                              dtype=torch.qint8)
    task = loaded.task
    examples = [task.example_from_record(task.record_from_text(t), f"input:{i + 1}", labelled=False)
                for i, t in enumerate(texts)]
    load_s = time.perf_counter() - t0
    if warmup:
        predict_examples(loaded, examples[:warmup], batch_size=batch_size)
    seconds, cpu_seconds, preds = common.timed_median(
        lambda: predict_examples(loaded, examples, batch_size=batch_size), repeats)
    threads = torch.get_num_threads()
    return {
        "sentences_per_s": len(texts) / seconds, "seconds": seconds, "load_s": load_s,
        "cpu_share": cpu_seconds / (seconds * threads), "batch_size": batch_size, "n": len(texts),
        "threads": threads, "quantized": quantize, "labels": [p["label"] for p in preds],
        "peak_rss_mb": peak_rss_mb(),
    }


if __name__ == "__main__":
    if not common.worker_main(globals()):
        raise SystemExit("usage: python -m bench.taskbert_side --worker NAME --kwargs-json @FILE "
                         "(run python -m bench.run for the benchmark)")
