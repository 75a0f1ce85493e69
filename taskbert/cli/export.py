"""``taskbert export RUN_DIR --format onnx``: the model as one ONNX graph, with its
tokenizer and label map, and a parity check against torch.

The export folder holds ``model.onnx`` (encoder and task head; inputs ``input_ids``,
``attention_mask`` and, when the tokenizer makes them, ``token_type_ids``, with dynamic
batch and sequence axes, and for a task that pools windows per document ``example_index``
(each row's document; the pooling is inside the graph); one output per tensor the task's ``forward`` returns, e.g.
``logits``), the tokenizer files, ``config.json`` (with ``id2label`` where the task has
labels) and ``taskbert.json`` (task, options, label map, max_length, the ONNX input and
output names and the parity figures). :class:`OnnxModel` predicts from such a folder
with ONNX Runtime through the task's own ``collect``/``decode``, so a prediction means
the same thing as ``taskbert predict``'s.

Exporters: ``dynamo`` (default) is torch's ``torch.export``-based exporter, the default
of ``torch.onnx.export`` since torch 2.9 (needs ``onnxscript``); ``torchscript`` is the
legacy tracer, deprecated by torch but faster to run and free of onnxscript. Both work
offline. Only tasks whose model reads nothing but the token inputs can be exported.
"""

import importlib.util
import json
import logging
import os
import shutil
import warnings

import click

from .. import io as tio
from ..errors import RunError, SpecError
from ..train import checkpoint as ckpt
from .main import cli, friendly

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
#: the extra input of a task whose rows are windows pooled per example (``Task.whole_examples``):
#: each row's example, so the pooling runs inside the graph
GROUP_INPUT = "example_index"
ONNX_FILE = "model.onnx"
EXPORTERS = ("dynamo", "torchscript")


def require(*modules):
    """Raise SpecError naming the extra to install when a module is missing."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise SpecError(f"--format onnx needs {', '.join(missing)}, not installed; "
                        f"run: pip install 'taskbert[onnx]'")


def _graph(model, input_names, outputs):
    """Wrap a TaskModel as ``f(input_ids, attention_mask[, token_type_ids]) -> tuple`` of
    the tensors named ``outputs`` (an ONNX graph has positional inputs and outputs)."""
    import torch

    class Graph(torch.nn.Module):
        """The exported module: named token inputs in, a tuple of tensors out."""

        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids=None, example_index=None):
            """(batch, seq) token inputs [and (batch,) example ids] -> the task's tensors, in
            ``outputs`` order."""
            given = {"input_ids": input_ids, "attention_mask": attention_mask,
                     "token_type_ids": token_type_ids, GROUP_INPUT: example_index}
            out = self.model({n: given[n] for n in input_names})
            return tuple(out[k] for k in outputs)

    return Graph().eval()


def sample_examples(run_dir, path=None, limit=32):
    """Examples for the parity check: from ``path`` (any input ``taskbert predict``
    reads) or else from the run's own validation, test or train file."""
    from ..data.splits import choose_format, read_examples
    from ..plugins.manager import registries
    from .runs import find_model_folder, load_task, read_inputs

    task, info = load_task(find_model_folder(run_dir))
    if path:
        return read_inputs(path, task)[:limit]
    data = (info.get("spec") or {}).get("data") or {}
    for split in ("validation", "test", "train"):
        source = data.get(split)
        if isinstance(source, str) and os.path.exists(source):   # a file or save_to_disk folder; not a hub id
            fmt = choose_format(source, data.get("format"), task, registries().readers)
            return read_examples(source, fmt, task, registries().readers, data.get("reader_options"),
                                 limit=limit, labelled=False, key=f"data.{split}")
    raise SpecError(f"{run_dir}: the run's data files are gone; give --sample FILE with a few inputs")


def _sample_rows(loaded, examples):
    rows = loaded.task.encode_all(examples, loaded.tokenizer, loaded.max_length)
    for i, row in enumerate(rows):
        row["feature_index"] = i
    return rows


def _probe(loaded, batch):
    """Names of the input tensors and of the tensor outputs of the task's forward."""
    import torch

    names = [n for n in INPUTS if n in batch]
    if loaded.task.whole_examples:
        names.append(GROUP_INPUT)
    try:
        with torch.inference_mode():
            out = loaded.model({n: batch[n] for n in names})
    except KeyError as exc:
        raise SpecError(f"export: task {loaded.task.name!r} reads batch field {exc.args[0]!r} in its "
                        f"forward; ONNX export covers models that read only {', '.join(INPUTS)}") from exc
    outputs = [k for k, v in out.items() if torch.is_tensor(v)]
    if not outputs:
        raise SpecError(f"export: task {loaded.task.name!r} returns no tensors from forward")
    return names, outputs


def _write_graph(graph, args, names, outputs, path, exporter, opset):
    import torch

    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)  # "torchvision is not installed" notes are noise here
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
            if exporter == "dynamo":
                batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
                shapes = {n: {0: batch} if n == GROUP_INPUT else {0: batch, 1: seq} for n in names}
                torch.onnx.export(graph, (), path, kwargs=args, dynamo=True, input_names=names,
                                  output_names=outputs, opset_version=opset, external_data=False,
                                  dynamic_shapes=shapes, verbose=False)
            else:
                axes = {n: {0: "batch"} if n == GROUP_INPUT else {0: "batch", 1: "sequence"} for n in names}
                axes.update({o: {0: "batch"} for o in outputs})
                torch.onnx.export(graph, (), path, kwargs=args, dynamo=False, input_names=names,
                                  output_names=outputs, opset_version=opset, dynamic_axes=axes)
    finally:
        onnx_log.setLevel(level)


def export_onnx(run_dir, examples, out_dir=None, exporter="dynamo", opset=18, tolerance=1e-4):
    """Export a run's best model to ``out_dir`` (default ``RUN_DIR/onnx``) and check that
    ONNX Runtime and torch agree on ``examples``; nothing is written when they do not.
    Returns the parity figures and the folder."""
    import torch

    from ..data.batching import collate, pad_id
    from .runs import load_run

    if exporter not in EXPORTERS:
        raise SpecError(f"--exporter: {exporter!r} is not allowed; use {' or '.join(EXPORTERS)}")
    require("onnx", "onnxruntime", *(("onnxscript",) if exporter == "dynamo" else ()))
    loaded = load_run(run_dir)
    out_dir = out_dir or os.path.join(run_dir, "onnx")
    rows = _sample_rows(loaded, examples)
    # up to 8 rows spread over the lengths, so the traced sample has padding where the
    # data allows: a trace of an all-ones mask could bake in a no-padding shortcut
    by_length = sorted(rows, key=lambda r: len(r["input_ids"]))
    picked = [by_length[i * (len(rows) - 1) // 7] for i in range(8)] if len(rows) > 8 else by_length
    sample = collate(picked, pad_id(loaded.tokenizer), loaded.task.pad_fields, loaded.task.vector_fields)
    names, outputs = _probe(loaded, sample)
    tmp = tio.new_temp_folder(out_dir)
    try:
        _write_graph(_graph(loaded.model, names, outputs), {n: sample[n] for n in names}, names,
                     outputs, os.path.join(tmp, ONNX_FILE), exporter, opset)
        loaded.tokenizer.save_pretrained(tmp)
        shutil.copy(os.path.join(loaded.folder, "config.json"), os.path.join(tmp, "config.json"))
        with open(os.path.join(loaded.folder, ckpt.TASK_FILE), encoding="utf-8") as fh:
            info = json.load(fh)
        info["onnx"] = {"file": ONNX_FILE, "inputs": names, "outputs": outputs, "opset": opset,
                        "exporter": exporter, "torch": torch.__version__}
        tio.atomic_json(os.path.join(tmp, ckpt.TASK_FILE), info)
        parity = compare(loaded, OnnxModel(tmp), examples)
        if parity["max_abs_diff"] > tolerance or parity["agreement"] < 1.0:
            raise RunError(f"export: ONNX Runtime and torch disagree on the sample "
                           f"(max |diff| {parity['max_abs_diff']:.2e}, tolerance {tolerance:g}; "
                           f"{parity['agreement']:.1%} of predictions equal); nothing written")
        info["onnx"]["parity"] = parity
        tio.atomic_json(os.path.join(tmp, ckpt.TASK_FILE), info)
        tio.swap_in(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"folder": out_dir, **parity}


def _numbers(value):
    """Every float inside a prediction (probabilities, scores), flattened in order."""
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, dict):
        return [x for k in sorted(value) for x in _numbers(value[k])]
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _numbers(v)]
    return []


def _strip_numbers(value):
    if isinstance(value, dict):
        return {k: _strip_numbers(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strip_numbers(v) for v in value]
    return None if isinstance(value, float) else value


def compare(loaded, onnx_model, examples):
    """Run torch and ONNX Runtime on ``examples``: the share of predictions whose
    non-float parts (labels, tags, spans) are equal, and the largest gap between the
    per-row results of the task's ``collect`` (unrounded probabilities or scores)."""
    from ..data.batching import pad_id
    from ..inference import run_inference

    rows = _sample_rows(loaded, examples)
    ours, _ = run_inference(loaded.model, loaded.task, rows, 64,
                            pad_id(loaded.tokenizer), _device("cpu"))
    theirs = onnx_model.run_rows(rows)
    gap = max((abs(x - y) for x, y in zip(_numbers(ours), _numbers(theirs))), default=0.0)
    a = loaded.task.decode(ours, rows, examples)
    b = onnx_model.task.decode(theirs, rows, examples)
    same = sum(_strip_numbers(x) == _strip_numbers(y) for x, y in zip(a, b))
    return {"examples": len(examples), "agreement": same / max(1, len(examples)), "max_abs_diff": gap}


def _device(name):
    import torch

    return torch.device(name)


class OnnxModel:
    """An exported folder run with ONNX Runtime; ``predict(examples)`` returns the task's
    predictions like ``taskbert predict`` does."""

    def __init__(self, folder, threads=None, task_options=None):
        require("onnxruntime")
        import onnxruntime as ort

        from ..encoder import load_tokenizer
        from .runs import load_task

        self.folder = folder
        self.task, self.info = load_task(folder, task_options)
        if "onnx" not in self.info:
            raise SpecError(f"{folder}/{ckpt.TASK_FILE}: no 'onnx' section; not an export folder")
        self.tokenizer = load_tokenizer(folder)
        self.max_length = self.info.get("max_length") or 128
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(os.path.join(folder, self.info["onnx"]["file"]), options,
                                            providers=["CPUExecutionProvider"])
        self.inputs = self.info["onnx"]["inputs"]
        self.outputs = self.info["onnx"]["outputs"]

    def run_rows(self, rows, batch_size=64):
        """Per-row results of the task's ``collect`` for feature rows, in row order."""
        import torch

        from ..data.batching import EvalLoader, pad_id, row_groups

        results = [None] * len(rows)
        for idx, batch in EvalLoader(rows, batch_size, pad_id(self.tokenizer), self.task.pad_fields,
                                     self.task.vector_fields, groups=row_groups(self.task, rows)):
            feed = {n: batch[n].numpy() if n in batch else torch.zeros_like(batch["input_ids"]).numpy()
                    for n in self.inputs}
            values = self.session.run(self.outputs, feed)
            out = {name: torch.from_numpy(v) for name, v in zip(self.outputs, values)}
            for i, res in zip(idx, self.task.collect(out, batch)):
                results[i] = res
        return results

    def predict(self, examples, batch_size=64):
        """One prediction dict per example."""
        rows = self.task.encode_all(examples, self.tokenizer, self.max_length)
        for i, row in enumerate(rows):
            row["feature_index"] = i
        return self.task.decode(self.run_rows(rows, batch_size), rows, examples)


def is_export_folder(path):
    """True when ``path`` holds an ONNX export (``model.onnx`` and ``taskbert.json``)."""
    return os.path.exists(os.path.join(path, ONNX_FILE)) and os.path.exists(os.path.join(path, ckpt.TASK_FILE))


@cli.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True)
@click.option("-o", "--output", type=click.Path(file_okay=False), help="folder (default: RUN_DIR/onnx)")
@click.option("--exporter", type=click.Choice(["dynamo", "torchscript"]), default="dynamo",
              show_default=True, help="torch.export-based (needs onnxscript) or the legacy tracer")
@click.option("--sample", type=click.Path(dir_okay=False),
              help="inputs for the parity check (default: the run's validation data)")
@click.option("--opset", default=18, show_default=True, type=click.IntRange(min=14))
@click.option("--task", "task_name", metavar="NAME",
              help="the task of a run of several tasks (default output: RUN_DIR/onnx-NAME)")
@friendly
def export(run_dir, fmt, output, exporter, sample, opset, task_name):
    """Export the best model with its tokenizer and label map; check ONNX Runtime
    against torch on a sample."""
    from .runs import task_folder

    require("onnx", "onnxruntime", *(("onnxscript",) if exporter == "dynamo" else ()))
    if task_name is not None:
        output = output or os.path.join(run_dir, f"onnx-{task_name}")
    run_dir = task_folder(run_dir, task_name)
    result = export_onnx(run_dir, sample_examples(run_dir, sample), output, exporter, opset)
    click.echo(f"wrote {result['folder']}: parity on {result['examples']} inputs: "
               f"{result['agreement']:.0%} same predictions, max |diff| {result['max_abs_diff']:.2e}")
