"""Several tasks on one encoder: a spec's ``tasks:`` trains them together.

:class:`MultiTask` joins the member tasks (any registered ones, unchanged) into one object
with the :class:`~taskbert.Task` interface, so the one training loop runs it as it runs a
single task; :class:`MultiHead` holds one head per member. What the composition adds:

* rows carry ``task_index`` (the member's position) and ``task_name``; batches never mix members
  (:func:`~taskbert.data.batching.row_parts`), and ``train.mixing`` says which member each
  batch trains (:func:`~taskbert.data.batching.mix_parts`); a batch is padded with its own
  member's fields (:func:`~taskbert.data.batching.batch_fields`);
* an example is ``(member index, the member's example)``; predictions carry ``"task"``;
  metrics are ``NAME/metric`` (``validation/NAME/metric`` in ``metrics.jsonl``) and ``mean``,
  the mean of every member's default metric;
* ``best/`` holds one complete model folder per member (``best/NAME/``: the shared encoder
  and that member's head, loadable by ``taskbert predict`` and plain transformers) and
  ``multitask.json``.

A member's loss is multiplied by its ``weight``. Tasks with a frozen encoder (feature-based
use) cannot take part: they need an encoder that does not change.
"""

import json
import os
import shutil

from torch import nn

from .errors import SpecError
from .head import Head
from .task import LOWER_SUFFIXES, Task, TaskModel, build_head_for, takes

MULTITASK_FILE = "multitask.json"


class MultiHead(Head):
    """One head per member task (``heads[NAME]``); a batch goes to its member's head
    (``batch["task"]``, set by :meth:`MultiTask.prepare_batch`), whose loss is weighted."""

    def __init__(self, heads, weights):
        super().__init__()
        self.heads = nn.ModuleDict(heads)
        self.names, self.weights = list(heads), list(weights)

    def read_positions(self, batch, training):
        return self.heads[self.names[batch["task"]]].read_positions(batch, training)

    def forward(self, encoder_output, batch):
        m = batch["task"]
        out = self.heads[self.names[m]](encoder_output, batch)
        if "loss" in out and self.weights[m] != 1.0:
            out = {**out, "loss": out["loss"] * self.weights[m]}
        return out


class MultiTask(Task):
    """The member tasks of a multi-task spec behind one Task interface (see the module)."""

    name = "multitask"
    description = "several tasks sharing one encoder (a spec's tasks:)"
    default_metric = "mean"

    def __init__(self, members):
        """``members``: ``[(name, task instance, loss weight)]``, in the spec's order."""
        super().__init__()
        self.names = [name for name, _, _ in members]
        self.members = [task for _, task, _ in members]
        self.weights = [float(w) for _, _, w in members]
        for name, task in zip(self.names, self.members):
            if not task.trainable_encoder():
                raise SpecError(f"tasks.{name}: task {task.name!r} keeps the encoder frozen and cannot "
                                f"share a trained one; train it in a spec of its own")
        self.whole_examples = any(t.whole_examples for t in self.members)

    # ------------------------------------------------------------ examples
    @staticmethod
    def join(per_member):
        """``{split: [(member index, example)]}`` from each member's ``{split: examples}``."""
        out = {}
        for m, examples in enumerate(per_member):
            for split, exs in examples.items():
                out.setdefault(split, []).extend((m, ex) for ex in exs)
        return out

    def _by_member(self, examples):
        """Member index -> (positions in ``examples``, the member's examples)."""
        out = {}
        for pos, (m, ex) in enumerate(examples):
            where, exs = out.setdefault(m, ([], []))
            where.append(pos)
            exs.append(ex)
        return out

    def added_tokens(self):
        tokens = []
        for task in self.members:
            tokens += [t for t in task.added_tokens() or [] if t not in tokens]
        return tokens

    def encode_all(self, examples, tokenizer, max_length, split=None):
        rows = []
        for m, (where, exs) in sorted(self._by_member(examples).items()):
            task = self.members[m]
            kwargs = {"split": split} if takes(task.encode_all, "split") else {}
            for row in task.encode_all(exs, tokenizer, max_length, **kwargs):
                row["example_index"] = where[row["example_index"]]   # the position in ``examples``
                row["task_index"] = m
                row["task_name"] = self.names[m]   # a string: collated as a host-side list
                rows.append(row)
        return rows

    # --------------------------------------------- what the core asks of the rows
    def row_parts(self, rows):
        """The member of each row: batches never mix members."""
        return [r["task_index"] for r in rows]

    def row_groups(self, rows):
        """Group ids: a whole-example member's rows by example, any other row on its own."""
        return [r["example_index"] if self.members[r["task_index"]].whole_examples else -1 - i
                for i, r in enumerate(rows)]

    def batch_fields(self, rows):
        """``(pad_fields, vector_fields)`` of the member whose rows these are."""
        task = self.members[rows[0]["task_index"]]
        return task.pad_fields, task.vector_fields

    # ---------------------------------------------------------------- model
    def build_head(self, encoder, tokenizer=None):
        # a head may drop encoder parts it reads none of (a tagger the pooler, so that best/ matches
        # BertForTokenClassification); the shared encoder keeps what any member reads, and
        # save_best leaves out of a member's folder what that member dropped
        heads, self.dropped = {}, {}
        before = dict(encoder.named_children())
        for name, task in zip(self.names, self.members):
            heads[name] = build_head_for(task, encoder, tokenizer)
            self.dropped[name] = [c for c, module in before.items() if getattr(encoder, c, None) is not module]
            for child in self.dropped[name]:
                setattr(encoder, child, before[child])
        for child in set.intersection(*(set(d) for d in self.dropped.values())):
            setattr(encoder, child, None)   # no member reads it
        for name, head in heads.items():
            if head.run_encoder is not None:
                raise SpecError(f"tasks.{name}: its head runs the encoder its own way (frozen features) "
                                f"and cannot share the encoder pass; train it in a spec of its own")
        return MultiHead(heads, self.weights)

    def prepare_batch(self, batch, training):
        m = self.names.index(batch["task_name"][0])   # read on the host, not off the device
        batch = self.members[m].prepare_batch(batch, training)
        return {**batch, "task": m}

    def reported_metrics(self):
        names = ["mean"]
        for name, task in zip(self.names, self.members):
            known = task.reported_metrics()
            names += [f"{name}/{k}" for k in (known or [task.default_metric])] + [f"{name}/loss"]
        return names

    def check_mean(self, where):
        """Raise SpecError unless ``mean`` (of every member's default metric) can pick the
        best model: each default must be a score where larger is better."""
        for name, task in zip(self.names, self.members):
            if task.default_metric == "loss" or not task.greater_is_better(task.default_metric):
                raise SpecError(f"{where}: train.metric: mean needs each task's default metric to be a "
                                f"score (larger is better), but tasks.{name} picks by "
                                f"{task.default_metric!r}; name one metric, e.g. validation/"
                                f"{self.names[0]}/{self.members[0].default_metric}")

    def greater_is_better(self, metric):
        parts = metric.split("/")
        parts = parts[1:] if parts[0] == "validation" else parts
        if len(parts) >= 2 and parts[0] in self.names:
            return self.members[self.names.index(parts[0])].greater_is_better(parts[-1])
        return parts[-1] not in self.lower_is_better and not parts[-1].endswith(LOWER_SUFFIXES)

    # -------------------------------------------------------------- outputs
    def collect(self, out, batch):
        return self.members[batch["task"]].collect(out, batch)

    def decode(self, results, rows, examples):
        predictions = [None] * len(examples)
        for m, (where, exs) in self._by_member(examples).items():
            local = {pos: i for i, pos in enumerate(where)}
            picked = [(res, row) for res, row in zip(results, rows) if row["task_index"] == m]
            member_rows = [{**row, "example_index": local[row["example_index"]]} for _, row in picked]
            decoded = self.members[m].decode([res for res, _ in picked], member_rows, exs)
            for pos, pred in zip(where, decoded):
                predictions[pos] = {"task": self.names[m], **pred}
        return predictions

    def score(self, predictions, examples):
        metrics, defaults, present = {}, [], self._by_member(examples)
        for m, (where, exs) in sorted(present.items()):
            task, name = self.members[m], self.names[m]
            preds = [{k: v for k, v in predictions[pos].items() if k != "task"} for pos in where]
            scores = task.score(preds, exs)
            metrics.update({f"{name}/{k}": v for k, v in scores.items()})
            if task.default_metric in scores:
                defaults.append(scores[task.default_metric])
        if defaults and len(defaults) == len(present):
            metrics["mean"] = sum(defaults) / len(defaults)
        return metrics

    def gold(self, example):
        m, ex = example
        return self.members[m].gold(ex)

    def on_train_start(self, trainer):
        for task in self.members:
            task.on_train_start(trainer)

    def on_train_end(self, trainer, metrics):
        for task in self.members:
            task.on_train_end(trainer, metrics)

    # ------------------------------------------------------------ best/ folders
    def save_best(self, folder, model, tokenizer, spec, extra=None):
        """``folder/NAME/`` for every member (a complete model folder: the shared encoder and
        that member's head) and ``multitask.json``; the whole folder swapped in at once."""
        from .io import new_temp_folder, swap_in
        from .train.checkpoint import save_model_folder

        tmp = new_temp_folder(folder)
        try:
            views = dict(spec.members())
            for name, task, head in zip(self.names, self.members, model.head.heads.values()):
                kept = {c: getattr(model.encoder, c) for c in getattr(self, "dropped", {}).get(name, ())}
                try:   # this member's folder without the encoder parts its head dropped
                    for child in kept:
                        setattr(model.encoder, child, None)
                    save_model_folder(os.path.join(tmp, name), TaskModel(model.encoder, head), tokenizer, task,
                                      views[name].to_dict(), extra)
                finally:
                    for child, module in kept.items():
                        setattr(model.encoder, child, module)
            with open(os.path.join(tmp, MULTITASK_FILE), "w", encoding="utf-8") as fh:
                json.dump({"tasks": {n: t.name for n, t in zip(self.names, self.members)},
                           **(extra or {})}, fh, indent=2, default=str)
            swap_in(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def load_best(self, folder, model):
        """Load what :meth:`save_best` wrote into ``model``: every member's folder holds the
        shared encoder, less the parts its head dropped, so each is read."""
        from .train import checkpoint as ckpt

        prefix = ckpt.model_state_prefix(model)
        for name, head in model.head.heads.items():
            ckpt.load_head_state(os.path.join(folder, name), head, prefix)
            ckpt.load_encoder_state(os.path.join(folder, name), model)


def member_folders(folder):
    """``{name: task name}`` of a multi-task ``best/`` folder, or None when ``folder`` is not one."""
    path = os.path.join(folder, MULTITASK_FILE)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as fh:
        return json.load(fh).get("tasks") or {}
