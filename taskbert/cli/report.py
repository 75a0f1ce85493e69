"""``taskbert report RUN_DIR``: learning curves, confusion matrices and a markdown summary.

Everything comes from the run folder's files, so a report can be drawn for any run,
finished or not, of any task:

* ``metrics.jsonl`` -> ``loss.png`` (train and validation loss), ``metrics.png`` (every
  validation metric), ``lr.png`` (the learning-rate schedule), against the step;
* ``predictions.jsonl`` -> ``confusion-<split>.png`` where the gold answer is categorical,
  as the task's ``report_labels`` says: a label string (classification, pairs) or a list of
  labels, one per word (tagging); a task that does not say is guessed by shape.
  The prediction field is the one of the same shape that agrees most with the gold
  (``label`` beats ``probabilities``; ``tags`` beats ``words``), or ``--field``;
* ``report.md``: the run's task, model and final metrics, per-label precision/recall/F1,
  the links to the pictures, and the sections plugins add (``taskbert_report_sections``).

Figures are drawn with matplotlib's Agg canvas (no display, no pyplot global state).
"""

import json
import os
from collections import Counter

import click
import yaml

from ..errors import DataError
from .main import cli, friendly
from .numbers import is_count, metric_text

#: a confusion matrix with more labels than this is unreadable; the report says so
MAX_LABELS = 60
META = ("split", "index", "gold")


def read_jsonl(path):
    """The JSON objects of a jsonl file; DataError naming the line of a broken one."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except ValueError as exc:
                raise DataError(f"{path}:{line_no}: not JSON: {exc}") from exc
    return out


# ------------------------------------------------------------------- curves
def _series(history, key, evals):
    """(steps, values) of ``key`` over train-log records (``evals=False``) or evaluation
    records; the final best-model record is left out (it is not a point in time)."""
    steps, values = [], []
    for rec in history:
        if rec.get("final") or key not in rec or "step" not in rec:
            continue
        if evals != any(k.startswith("validation/") for k in rec):
            continue
        if isinstance(rec[key], (int, float)) and not isinstance(rec[key], bool):
            steps.append(rec["step"])
            values.append(rec[key])
    return steps, values


def _figure(width=6.0, height=3.6):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_curves(history, out_dir):
    """Draw loss.png, metrics.png and lr.png (those with data); return the paths."""
    files = []
    train_loss = _series(history, "train/loss", evals=False)
    val_loss = _series(history, "validation/loss", evals=True)
    if train_loss[0] or val_loss[0]:
        fig = _figure()
        ax = fig.add_subplot()
        if train_loss[0]:
            ax.plot(*train_loss, label="train", color="tab:blue")
        if val_loss[0]:
            ax.plot(*val_loss, "o-", label="validation", color="tab:orange")
        ax.set(xlabel="optimizer step", ylabel="loss", title="Loss")
        ax.grid(alpha=0.3)
        ax.legend()
        files.append(_save(fig, os.path.join(out_dir, "loss.png")))
    names = sorted({k for rec in history if not rec.get("final") for k in rec
                    if k.startswith("validation/") and k != "validation/loss"})
    curves = [(k, _series(history, k, evals=True)) for k in names]
    curves = [(k, s) for k, s in curves if s[0] and not all(is_count(v) for v in s[1])]   # scores, not counts
    if curves:
        fig = _figure()
        ax = fig.add_subplot()
        for key, (steps, values) in curves:
            ax.plot(steps, values, "o-", label=key.split("/", 1)[1])
        ax.set(xlabel="optimizer step", ylabel="value", title="Validation metrics")
        ax.grid(alpha=0.3)
        ax.legend()
        files.append(_save(fig, os.path.join(out_dir, "metrics.png")))
    lr = _series(history, "lr", evals=False)
    if lr[0]:
        fig = _figure(6.0, 3.0)
        ax = fig.add_subplot()
        ax.plot(*lr, color="tab:green")
        ax.set(xlabel="optimizer step", ylabel="learning rate", title="Learning rate")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        ax.grid(alpha=0.3)
        files.append(_save(fig, os.path.join(out_dir, "lr.png")))
    return files


# -------------------------------------------------------------- confusion
def _is_labels(value):
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _pairs(line, key, gold, kind="guess"):
    """Aligned (gold, predicted) label pairs of one line for field ``key``, or None when
    the shapes differ (or are not those of ``kind``, :attr:`taskbert.Task.report_labels`)."""
    pred = line.get(key)
    if isinstance(gold, str) and isinstance(pred, str) and kind in ("guess", "per_example"):
        return [(gold, pred)]
    if (_is_labels(gold) and _is_labels(pred) and len(gold) == len(pred)
            and kind in ("guess", "per_word")):
        return list(zip(gold, pred))
    return None


def label_pairs(lines, field=None, kind="guess"):
    """``(field, [(gold, predicted)])`` for prediction lines of one split.

    Gold may be a label, a list of labels, or a mapping whose keys name prediction fields.
    Without ``field``, every field whose shape matches the gold on every line is a
    candidate and the one that agrees with the gold most often wins. ``(None, [])`` when
    no field matches (e.g. extractive QA, whose gold is a list of answer texts). ``kind``
    is the task's ``report_labels``: ``per_example`` compares labels only, ``per_word``
    lists of labels only, None nothing; ``guess`` (a task that does not say) both.
    """
    if kind is None:
        return None, []
    lines = [ln for ln in lines if "gold" in ln]
    if not lines:
        return None, []
    candidates = {}
    for i, line in enumerate(lines):
        gold = line["gold"]
        keys = [field] if field else [k for k in line if k not in META]
        if isinstance(gold, dict):
            keys = [k for k in keys if k in gold]
        found = {}
        for key in keys:
            pairs = _pairs(line, key, gold[key] if isinstance(gold, dict) else gold, kind)
            if pairs is not None:
                found[key] = pairs
        if i == 0:
            candidates = {k: list(v) for k, v in found.items()}
        else:
            candidates = {k: candidates[k] + found[k] for k in candidates if k in found}
        if not candidates:
            return None, []
    best = max(candidates, key=lambda k: sum(g == p for g, p in candidates[k]) / max(1, len(candidates[k])))
    return best, candidates[best]


def _label_order(label):
    # BIO tags grouped by entity type (B-X next to I-X), after plain labels such as O
    if label[:2] in ("B-", "I-", "E-", "S-") and len(label) > 2:
        return (1, label[2:], "BIES".index(label[0]))
    return (0, label, 0)


def confusion(pairs):
    """``(labels, matrix)``: rows are gold labels, columns predictions, over the union of
    both (sorted; B-/I- tags grouped by type) with scikit-learn's ``confusion_matrix``."""
    from sklearn.metrics import confusion_matrix

    labels = sorted({g for g, _ in pairs} | {p for _, p in pairs}, key=_label_order)
    golds, preds = zip(*pairs)
    return labels, confusion_matrix(golds, preds, labels=labels).tolist()


def plot_confusion(labels, matrix, title, path):
    """Draw a confusion matrix: colour = share of the gold row, numbers = counts."""
    import numpy as np

    counts = np.array(matrix, dtype=float)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    n = len(labels)
    side = min(16.0, max(4.0, 0.42 * n + 2.2))
    fig = _figure(side + 1.0, side)
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of gold row")
    ax.set_xticks(range(n), labels, rotation=90 if n > 4 else 0, fontsize=8 if n > 12 else 10)
    ax.set_yticks(range(n), labels, fontsize=8 if n > 12 else 10)
    ax.set(xlabel="predicted", ylabel="gold", title=title)
    if n <= 25:
        for i in range(n):
            for j in range(n):
                if matrix[i][j]:
                    ax.text(j, i, str(matrix[i][j]), ha="center", va="center", fontsize=8 if n > 8 else 10,
                            color="white" if share[i, j] > 0.5 else "black")
    return _save(fig, path)


def per_label(pairs, labels):
    """``[(label, support, precision, recall, f1)]`` from scikit-learn."""
    from sklearn.metrics import precision_recall_fscore_support

    golds, preds = zip(*pairs)
    p, r, f, s = precision_recall_fscore_support(golds, preds, labels=labels, zero_division=0)
    return [(lab, int(s[i]), float(p[i]), float(r[i]), float(f[i])) for i, lab in enumerate(labels)]


# ----------------------------------------------------------------- report
def _hook():
    from ..plugins.manager import get_plugin_manager

    return get_plugin_manager().hook


def _task_of(run_dir):
    """The run's task as ``best/taskbert.json`` restores it (no weights); None for a run
    without a best model yet, or whose task this install lacks (the report then guesses)."""
    from ..errors import TaskbertError
    from .runs import find_model_folder, load_task

    try:
        return load_task(find_model_folder(run_dir))[0]
    except (TaskbertError, OSError, ValueError, KeyError):
        return None


def _final_metrics(history):
    finals = [rec for rec in history if rec.get("final")]
    if finals:
        return finals[-1]
    evals = [rec for rec in history if any(k.startswith("validation/") for k in rec)]
    return evals[-1] if evals else {}


def _metrics_table(final):
    by_split = {}
    for key, value in final.items():
        if "/" in key and isinstance(value, (int, float)) and not isinstance(value, bool):
            split, name = key.split("/", 1)
            by_split.setdefault(split, {})[name] = value
    if not by_split:
        return []
    splits = sorted(by_split, key=lambda s: ("validation", "test").index(s) if s in ("validation", "test") else 9)
    names = sorted({n for m in by_split.values() for n in m})
    out = ["| metric | " + " | ".join(splits) + " |", "|---|" + "---|" * len(splits)]
    for name in names:
        cells = [metric_text(by_split[s][name]) if name in by_split[s] else "" for s in splits]
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return out


def write_report(run_dir, out_dir=None, field=None, max_labels=MAX_LABELS):
    """Draw every picture the run's files allow and write ``report.md``; return a dict
    with ``files`` (paths written) and ``confusion`` (``{split: (labels, matrix)}``)."""
    metrics_path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(metrics_path):
        from .seeds import SUMMARY_FILE

        seeds = sorted(d for d in os.listdir(run_dir) if os.path.isfile(os.path.join(run_dir, d, "metrics.jsonl"))) \
            if os.path.exists(os.path.join(run_dir, SUMMARY_FILE)) else []
        if seeds:   # a `run --seeds` folder: one report per run
            raise DataError(f"{run_dir}: a folder of `taskbert run --seeds` runs ({SUMMARY_FILE} holds their "
                            f"mean and spread); report one of them, e.g. {os.path.join(run_dir, seeds[0])}")
        raise DataError(f"{run_dir}: no metrics.jsonl; give the folder of a run (taskbert run SPEC)")
    out_dir = out_dir or os.path.join(run_dir, "report")
    os.makedirs(out_dir, exist_ok=True)
    history = read_jsonl(metrics_path)
    files = plot_curves(history, out_dir)
    spec = {}
    if os.path.exists(os.path.join(run_dir, "spec.yaml")):
        with open(os.path.join(run_dir, "spec.yaml"), encoding="utf-8") as fh:
            spec = yaml.safe_load(fh) or {}
    final = _final_metrics(history)
    steps = max((rec.get("step", 0) for rec in history), default=0)
    md = [f"# Report: {os.path.basename(os.path.abspath(run_dir))}", ""]
    tasks = spec.get("tasks") or {}
    about = [", ".join(f"task `{n}` ({(t or {}).get('task', '?')})" for n, t in tasks.items())
             if tasks else f"task `{spec.get('task', '?')}`",
             f"encoder `{(spec.get('encoder') or {}).get('model', '?')}`", f"{steps} optimizer steps"]
    if final.get("best_step") is not None:
        about.append(f"best model at step {final['best_step']}")
    md += [", ".join(about) + ".", ""] + _metrics_table(final) + [""]
    md += [f"![{os.path.splitext(os.path.basename(f))[0]}]({os.path.basename(f)})" for f in files] + [""]
    matrices = {}
    pred_path = os.path.join(run_dir, "predictions.jsonl")
    lines = read_jsonl(pred_path) if os.path.exists(pred_path) else []
    order = {"train": 0, "validation": 1, "test": 2}
    task = None if tasks else _task_of(run_dir)
    # one section per split, or with several tasks per task and split ("names-validation")
    sections = [(split, name) for name in (tasks or [None])
                for split in sorted({ln.get("split", "?") for ln in lines}, key=lambda s: (order.get(s, 3), s))]
    for split, name in sections:
        split_lines = [ln for ln in lines if ln.get("split", "?") == split and ln.get("task") == name]
        member = _task_of(os.path.join(run_dir, "best", name)) if name else task
        kind = getattr(member, "report_labels", "guess")
        if not split_lines:
            continue
        split = f"{name}-{split}" if name else split
        key, pairs = label_pairs(split_lines, field, kind)
        if not pairs:
            why = ("no prediction field matches the gold answers in shape" if kind is not None else
                   f"task `{member.name}` has no categorical answers")
            md += [f"{split}: {why}; no confusion matrix.", ""]
            continue
        labels, matrix = confusion(pairs)
        if len(labels) > max_labels:
            md += [f"{split}: {len(labels)} distinct labels in `{key}`, more than {max_labels}; "
                   f"no confusion matrix.", ""]
            continue
        matrices[split] = (labels, matrix)
        unit = "tags" if any(isinstance(ln.get("gold"), (list, dict)) for ln in split_lines) else "examples"
        path = plot_confusion(labels, matrix, f"{split}: {key} ({len(pairs)} {unit})",
                              os.path.join(out_dir, f"confusion-{split}.png"))
        files.append(path)
        md += [f"## {split}: `{key}` against the gold ({len(pairs)} {unit})", "",
               f"![confusion {split}]({os.path.basename(path)})", "",
               "| label | support | precision | recall | F1 |", "|---|---|---|---|---|"]
        md += [f"| {lab} | {s} | {p:.3f} | {r:.3f} | {f:.3f} |" for lab, s, p, r, f in per_label(pairs, labels)]
        errors = Counter((g, p) for g, p in pairs if g != p).most_common(3)
        if errors:
            md += ["", "Most frequent errors: " + "; ".join(f"{g} → {p} ({n})" for (g, p), n in errors) + "."]
        md.append("")
    for lines_of_plugin in _hook().taskbert_report_sections(run_dir=run_dir, out_dir=out_dir, task=task,
                                                            history=history, predictions=lines):
        md += list(lines_of_plugin or []) + [""]
    report_md = os.path.join(out_dir, "report.md")
    with open(report_md, "w", encoding="utf-8") as fh:
        fh.write("\n".join(md).rstrip() + "\n")
    files.append(report_md)
    return {"files": files, "confusion": matrices}


@cli.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", type=click.Path(file_okay=False), help="folder (default: RUN_DIR/report)")
@click.option("--field", help="prediction field to compare with the gold (default: the best match)")
@friendly
def report(run_dir, output, field):
    """Draw learning curves and confusion matrices (PNG) and write report.md for a run."""

    result = write_report(run_dir, output, field)
    for path in result["files"]:
        click.echo(path)
