"""From a spec to a finished run folder: check everything, load, encode, train.

``prepare`` does all the checking that needs no model weights, so ``taskbert validate``
and ``taskbert run`` fail the same way, before anything heavy happens or any file is
written. ``execute`` then owns the run folder.
"""

import difflib
import json
import os
import pickle
import platform
import shutil
import subprocess
import sys
import time

from . import __version__
from . import io as tio
from .data.sources import source_identity
from .data.splits import encode_split, load_splits
from .encoder import encoder_source, first_line
from .errors import DataError, SpecError, printable
from .plugins.manager import get_plugin_manager, registries
from .run_folder import check_output
from .train.compiling import check_compile
from .train.optim import pick_device


class Prepared:
    """What ``prepare`` found: the task instance, the checked encoder source, the examples
    and any warnings."""

    def __init__(self, spec, task, source, examples, warnings):
        self.spec, self.task, self.source = spec, task, source
        self.examples, self.warnings = examples, warnings


def _check_metric(spec, task):
    """``train.metric`` must be one the task reports (when it can say so before scoring)."""
    names = task.reported_metrics()
    if names is None:
        return
    metric, allowed = spec.train.metric, ["loss", *names]
    base = metric[len("validation/"):] if metric and metric.startswith("validation/") else metric
    if hasattr(task, "check_mean") and base in (None, "mean"):
        task.check_mean(spec.path)   # several tasks: the mean of their defaults must make sense
    if metric is None:   # the task's own default must be one it reports
        if task.default_metric in allowed or hasattr(task, "check_mean"):
            return
        raise SpecError(f"{spec.path}: task {task.name!r}: its default_metric {task.default_metric!r} is "
                        f"not among the metrics it reports ({', '.join(allowed)}); set train.metric "
                        f"to one of them (or fix the task's default_metric)")
    if base in allowed:
        return
    close = difflib.get_close_matches(base, allowed, n=1) or [n for n in allowed if base in n][:1]
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise SpecError(f"{spec.path}: train.metric: {metric!r} is not a validation metric of task "
                    f"{task.name!r}{hint}; allowed: {', '.join(allowed)}")


class _Unchecked(Exception):
    """Out of ``check_encoding``: the source has no tokenizer before it loads (no args: the
    checks are skipped), or loading it failed (the error, raised as it is)."""


class _OnFirstUse:
    """What ``check_encoding`` gets for the source's tokenizer or config: fetched (no weights)
    when the task first uses it, so a task whose options need no check loads neither."""

    def __init__(self, fetch):
        self._fetch = fetch

    def _get(self):
        if "_value" not in self.__dict__:
            self._value = self._fetch()
        return self._value

    def __getattr__(self, name):   # only for names the stand-in itself lacks
        return getattr(self._get(), name)

    @property
    def __class__(self):   # isinstance(stand_in, PreTrainedTokenizerBase) holds, as for the real one
        return type(self._get())

    def __call__(self, *args, **kwargs):
        return self._get()(*args, **kwargs)

    def __len__(self):
        return len(self._get())


def _encoding_inputs(source):
    """``(tokenizer, config)`` stand-ins; either one, first used, asks the source for its
    tokenizer first: a source without one before it loads (from scratch) checks nothing."""
    def tokenizer():
        try:
            found = source.tokenizer()
        except SpecError as exc:
            raise _Unchecked(exc) from exc
        if found is None:
            raise _Unchecked
        return found

    tok = _OnFirstUse(tokenizer)
    return tok, _OnFirstUse(lambda: (tok._get(), source.config())[1])


def prepare(spec):
    """Check the spec's task(s), encoder and data without loading weights."""
    regs = registries()
    hook = get_plugin_manager().hook
    members = spec.members()
    tasks = [regs.tasks.get(m.task)(m.options) for _, m in members]
    for _, member in members:
        hook.taskbert_check_spec(spec=member)
    source = encoder_source(spec if len(members) == 1 else members[0][1], hook)
    for name, member in members[1:]:   # several tasks share one encoder: the same source for each
        other = encoder_source(member, hook)
        if type(other) is not type(source):
            raise SpecError(f"{spec.path}: tasks.{name}: its encoder comes from {other.name!r}, the other "
                            f"tasks' from {source.name!r}; tasks sharing an encoder must load the same one")
    source.check()
    if len(members) == 1:
        task = tasks[0]
    else:
        from .multitask import MultiTask

        task = MultiTask([(name, t, spec.tasks[name].weight) for (name, _), t in zip(members, tasks)])
    _check_metric(spec, task)
    check_compile(spec, pick_device())
    warnings, per_member = [], []   # the records each file's task skipped, then the task's own checks
    tokenizer, config = _encoding_inputs(source)
    for (name, member), member_task in zip(members, tasks):
        where = f"{spec.path}: " + (f"tasks.{name}." if name else "")
        if "train" not in member.data.splits() and member_task.trainable_encoder():
            raise SpecError(f"{where}data.train: required for training")
        try:
            member_task.check_encoding(tokenizer, spec.encoder.max_length, config)
        except _Unchecked as stop:
            if stop.args:
                raise stop.args[0] from None
        except SpecError as exc:
            raise SpecError(f"{where}{exc}") from exc
        examples = load_splits(member, member_task, regs.readers, warnings)
        for split, exs in examples.items():
            warnings.extend(member_task.check(exs, split, member.data.splits()[split]))
        per_member.append(examples)
    examples = per_member[0] if len(members) == 1 else task.join(per_member)
    return Prepared(spec, task, source, examples, warnings)


def manifest(spec, processes=1):
    """Versions, data hashes, seed, the git commit and the number of training processes,
    for ``manifest.json``."""
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
        "seed": spec.train.seed, "git_commit": commit, "processes": processes,
        "data": {split: source_identity(p) for split, p in spec.data_files().items()},
    }


def execute(spec, resume=False, overwrite=False):
    """Train per the spec; return the final metrics. The run folder is created here,
    after every check has passed. Under torchrun / accelerate launch every process runs
    this; only the main one writes."""
    import torch

    from .train import distributed

    world = distributed.setup()  # joins the process group first: the checks below all
    try:                         # finish on every rank before rank 0 writes (barrier)
        again = check_output(spec, resume, overwrite)
        if again:   # --resume of a run killed before its first checkpoint: start it afresh
            if world.is_main:
                print(f"note: {again}", file=sys.stderr)
            resume, overwrite = False, True
        prepared = prepare(spec)
        if "train" not in prepared.examples:
            raise SpecError(f"{spec.path}: data.train: required by taskbert run")
        if spec.train.threads:
            torch.set_num_threads(spec.train.threads)
        final = _train(spec, prepared, world, resume, overwrite)
    except BaseException:
        distributed.teardown(wait=False)
        raise
    distributed.teardown()
    return final


def load_encoder(spec, source=None):
    """``(encoder, tokenizer)`` from ``source`` (a checked :class:`~taskbert.EncoderSource`,
    e.g. ``prepare(spec).source``; by default the one ``taskbert_encoder_source`` gives, checked
    here); a model that cannot be read is bad input (one line), not a traceback."""
    from .encoder import quiet_loading

    if source is None:
        source = encoder_source(spec)
        source.check()
    try:
        with quiet_loading():   # a plugin's source too
            loaded = source.load()
    except pickle.UnpicklingError as exc:   # torch's weights_only load refused a pickled object
        raise SpecError(f"encoder.model: refused {spec.encoder.model!r}: its pickled weights file holds "
                        f"objects other than tensors, and pickles from strangers run code; use a "
                        f"model.safetensors copy of the weights") from exc
    except (OSError, ValueError) as exc:
        raise SpecError(f"encoder.model: cannot load {spec.encoder.model!r}: {first_line(exc)}") from exc
    return loaded


def _train(spec, prepared, world, resume, overwrite):
    import yaml

    from .task import TaskModel, add_task_tokens, build_head_for
    from .train.loop import Trainer
    from .train.optim import seed_everything
    from .train.steps import check_steps

    task, examples = prepared.task, prepared.examples
    hook = get_plugin_manager().hook
    seed_everything(spec.train.seed)
    encoder, tokenizer = load_encoder(spec, prepared.source)
    add_task_tokens(task, tokenizer, encoder)
    head = build_head_for(task, encoder, tokenizer)
    model = TaskModel(encoder, head, train_encoder=task.trainable_encoder())
    rows = {split: encode_split(task, exs, tokenizer, spec.encoder.max_length, split)
            for split, exs in examples.items()}
    plan = check_steps(spec, task, rows["train"])   # before the run folder is touched
    world.barrier()  # every rank has checked the run folder before rank 0 changes it
    if world.is_main:
        if overwrite and not resume and os.path.isdir(spec.output):
            shutil.rmtree(spec.output)  # check_output made sure it holds a run and no inputs
        os.makedirs(spec.output, exist_ok=True)
        if not resume:
            tio.atomic_write(os.path.join(spec.output, "spec.yaml"),
                              yaml.safe_dump(spec.to_dict(), sort_keys=False))
            tio.atomic_json(os.path.join(spec.output, "manifest.json"), manifest(spec, world.world))
        for w in prepared.warnings:
            print(f"warning: {printable(w)}", file=sys.stderr)   # it may quote the data
    world.barrier()  # the run folder exists before any rank looks into it
    trainer = Trainer(spec, task, model, tokenizer, rows, examples, spec.output, hook,
                      resume=resume, world=world, plan=plan)
    return trainer.train()


def dump_json(obj):
    """JSON text for CLI output."""
    return json.dumps(obj, indent=2, ensure_ascii=False, default=str)


__all__ = ["prepare", "execute", "load_encoder", "manifest", "DataError"]
