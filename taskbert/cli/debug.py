"""``taskbert debug data SPEC``: what the data looks like to the model, before training.

Loads the spec's splits and only the tokenizer (no weights), then reports per split:

* what ``encoder.max_length`` cuts (``Task.truncation``: examples by default; word- and
  span-level tasks count words or answers; tasks that window long inputs count tokens), and
  how many examples need how many feature rows (windows);
* the distribution of the gold labels (``Task.label_list``: one label per example, or one
  per word), and labels in validation/test that train never has;
* invalid BIO sequences in per-word labels (an ``I-X`` that does not follow ``B-X`` or
  ``I-X``), when the labels use B-/I- prefixes;
* validation/test examples whose model input (token ids, untruncated) equals a training
  example's, split into those with the same gold and those with a different one.

A problem the task's ``setup`` raises (e.g. an unseen label) is reported, not fatal.
"""

import functools
import json
from collections import Counter

import click

from ..data.splits import choose_format, encode_split, read_examples
from ..encoder import encoder_source
from ..errors import RunError, TaskbertError
from ..plugins.manager import registries
from .main import SET_HELP, cli, friendly

UNLIMITED = 1_000_000  # "no max_length": longer than any real input
SHOWN = 5              # locations listed per finding


def _where(example, split, i):
    return example.get("where") if isinstance(example, dict) and example.get("where") else f"{split}[{i}]"


def bio_errors(tags):
    """Positions ``(i, previous, tag)`` where an ``I-X`` tag follows neither ``B-X`` nor
    ``I-X`` (IOB2: every entity opens with B-)."""
    out, previous = [], "O"
    for i, tag in enumerate(tags):
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            out.append((i, previous, tag))
        previous = tag if tag[:2] in ("B-", "I-") else "O"
    return out


def _input_keys(task, examples, tokenizer):
    """One hashable key per example: the token ids (and segment ids) of all its rows at
    an unlimited length, i.e. what the model would read."""
    keys = [[] for _ in examples]
    for row in task.encode_all(examples, tokenizer, UNLIMITED):
        keys[row["example_index"]].append((tuple(row["input_ids"]), tuple(row.get("token_type_ids") or ())))
    return [tuple(k) for k in keys]


def _labels_of(task, example):
    labels = task.label_list(example)
    if labels is not None and (isinstance(labels, (str, bytes)) or not isinstance(labels, (list, tuple))
                               or not all(isinstance(lab, str) for lab in labels)):
        raise RunError(f"task {task.name!r}: label_list must return a list of label strings or None, "
                       f"got {type(labels).__name__} {str(labels)[:60]!r}")
    return labels


def _reuse_encodings(task):
    """Have ``task.encode_all`` hand back the rows it already made for the same examples at
    the same length (the default ``truncation`` and the duplicate keys both encode a split at
    an unlimited length, QA's ``truncation`` and the windows count at ``max_length``); the
    list it returns holds them, to be cleared once a split is measured."""
    encode_all, made = task.encode_all, []   # (args, kwargs, rows); args kept alive: ids stay theirs

    def same(a, b):
        return a is b or (isinstance(a, (int, str)) and type(a) is type(b) and a == b)

    @functools.wraps(encode_all)   # keeps the signature (encode_split asks whether it takes split=)
    def reused(*args, **kwargs):
        for seen_args, seen_kwargs, rows in made:
            if len(seen_args) == len(args) and all(map(same, seen_args, args)) and \
                    seen_kwargs.keys() == kwargs.keys() and all(same(seen_kwargs[k], kwargs[k]) for k in kwargs):
                return rows
        rows = encode_all(*args, **kwargs)
        made.append((args, kwargs, rows))
        return rows
    task.encode_all = reused
    return made


def debug_data(spec):
    """The findings as a dict (see ``format_report`` for the text form)."""
    regs = registries()
    task = regs.tasks.get(spec.task)(spec.options)
    made = _reuse_encodings(task)
    source = encoder_source(spec)
    source.check()
    tokenizer = source.tokenizer()
    if tokenizer is None:
        raise RunError(f"{spec.path}: encoder: {source.name!r} has no tokenizer before a run loads it "
                       f"(e.g. a vocabulary trained from scratch); set encoder.tokenizer to look at the data")
    examples = {}
    for split, path in spec.data.splits().items():
        fmt = choose_format(path, spec.data.format, task, regs.readers)
        examples[split] = read_examples(path, fmt, task, regs.readers, spec.data.reader_options,
                                        limit=getattr(spec.data.limit, split), key=f"data.{split}")
    report = {"spec": spec.path, "task": spec.task, "max_length": spec.encoder.max_length,
              "splits": {}, "problems": []}
    try:
        task.setup(examples)
    except TaskbertError as exc:
        report["problems"].append(str(exc))
    labels, keys = {}, {}
    for split, exs in examples.items():
        info = {"examples": len(exs)}
        try:
            info["truncation"] = {unit: {"cut": cut, "total": total}
                                  for unit, (cut, total) in task.truncation(exs, tokenizer,
                                                                            spec.encoder.max_length).items()}
            per_example = Counter(Counter(r["example_index"] for r in encode_split(
                task, exs, tokenizer, spec.encoder.max_length, split)).values())
            info["windows"] = {str(n): per_example[n] for n in sorted(per_example)}
        except Exception as exc:  # a task that cannot encode here must not hide the rest
            report["problems"].append(f"{split}: truncation not measured: {type(exc).__name__}: {exc}")
        if "train" in examples and not any(isinstance(k, Exception) for k in keys.values()):
            try:   # while this split's unlimited encoding is at hand; reported by _duplicates
                keys[split] = _input_keys(task, exs, tokenizer)
            except Exception as exc:
                keys[split] = exc
        made.clear()
        per_example = [_labels_of(task, ex) for ex in exs]
        counts = Counter(lab for labs in per_example if labs for lab in labs)
        if counts:
            labels[split] = counts
            info["labels"] = dict(counts.most_common())
            info["without_labels"] = sum(labs == [] for labs in per_example)   # a multi-label task's empty sets
            sequences = [(i, labs) for i, labs in enumerate(per_example) if labs]
            if any(lab[:2] in ("B-", "I-") for lab in counts):
                bad = [(i, errs) for i, labs in sequences if (errs := bio_errors(labs))]
                info["invalid_bio"] = {
                    "sequences": len(bad), "transitions": sum(len(e) for _, e in bad),
                    "first": [f"{_where(exs[i], split, i)}: tag {e[0][0] + 1} {e[0][2]} after {e[0][1]}"
                              for i, e in bad[:SHOWN]]}
        report["splits"][split] = info
    for split, counts in labels.items():
        if split != "train" and "train" in labels:
            unseen = {lab: n for lab, n in counts.items() if lab not in labels["train"]}
            report["splits"][split]["unseen_in_train"] = unseen
    if "train" in examples:
        try:
            _duplicates(task, examples, keys, report)
        except Exception as exc:
            report["problems"].append(f"duplicates not checked: {type(exc).__name__}: {exc}")
    return report


def _keys_of(keys, split):
    """A split's input keys, or the error computing them raised, raised now."""
    if isinstance(keys[split], Exception):
        raise keys[split]
    return keys[split]


def _duplicates(task, examples, keys, report):
    train = examples["train"]
    seen = {}
    for i, key in enumerate(_keys_of(keys, "train")):
        seen.setdefault(key, i)
    for split, exs in examples.items():
        if split == "train":
            continue
        same, differ, first = 0, 0, []
        for i, key in enumerate(_keys_of(keys, split)):
            if key not in seen:
                continue
            j = seen[key]
            if task.gold(exs[i]) == task.gold(train[j]):
                same += 1
            else:
                differ += 1
            if len(first) < SHOWN:
                first.append(f"{_where(exs[i], split, i)} = {_where(train[j], 'train', j)}")
        report["splits"][split]["duplicates_of_train"] = {
            "same_gold": same, "different_gold": differ, "first": first}


def _share(part, whole):
    if not whole:
        return "0"
    share = part / whole
    return f"{part} of {whole} ({share:.1%})" if share == 0 or share >= 0.001 else f"{part} of {whole} ({share:.3%})"


def format_report(report, top=15):
    """The human-readable text of a ``debug_data`` result."""
    out = [f"{report['spec']}: task {report['task']}, encoder.max_length {report['max_length']}"]
    for split, info in report["splits"].items():
        out.append(f"{split}: {info['examples']} examples")
        for unit, t in (info.get("truncation") or {}).items():
            what = unit if " by " in unit else f"{unit} cut by max_length"   # a unit may name its cause
            out.append(f"  {what}: {_share(t['cut'], t['total'])}")
        if any(n != "1" for n in info.get("windows", {})):   # some example needs several
            out.append("  feature rows (windows) per example: " + ", ".join(
                f"{n}: {k} examples" for n, k in info["windows"].items()))
        if "labels" in info:
            total = sum(info["labels"].values())
            shown = list(info["labels"].items())[:top]
            more = len(info["labels"]) - len(shown)
            out.append(f"  labels ({len(info['labels'])}): " + ", ".join(
                f"{lab} {n} ({n / total:.1%})" for lab, n in shown) + (f", ... {more} more" if more > 0 else ""))
        if info.get("without_labels"):
            out.append(f"  examples without a label: {_share(info['without_labels'], info['examples'])}")
        if info.get("unseen_in_train"):
            unseen = info["unseen_in_train"]
            out.append(f"  labels unseen in train ({len(unseen)}): " + ", ".join(
                f"{lab} {n}" for lab, n in list(unseen.items())[:top]))
        elif "unseen_in_train" in info:
            out.append("  labels unseen in train: none")
        if "invalid_bio" in info:
            bio = info["invalid_bio"]
            out.append(f"  invalid BIO: {bio['transitions']} I- tags in {bio['sequences']} sequences")
            out.extend(f"    {line}" for line in bio["first"])
        if "duplicates_of_train" in info:
            d = info["duplicates_of_train"]
            n = d["same_gold"] + d["different_gold"]
            out.append(f"  duplicates of train examples: {n} ({d['same_gold']} same gold, "
                       f"{d['different_gold']} different gold)")
            out.extend(f"    {line}" for line in d["first"])
    for problem in report["problems"]:
        out.append(f"problem: {problem}")
    return "\n".join(out)


@cli.group()
def debug():
    """Look at a spec's data before training."""


@debug.command("data")
@click.argument("spec_file", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@friendly
def debug_data_cmd(spec_file, overrides, as_json):
    """Truncation by max_length, label distributions, labels unseen in train, invalid
    BIO sequences and train/dev duplicates of a spec's data (loads only the tokenizer)."""
    from ..config.spec import load_spec

    spec = load_spec(spec_file, overrides)
    if spec.tasks:   # several tasks: one report each, under its name
        reports = {name: debug_data(member) for name, member in spec.members()}
        click.echo(json.dumps(reports, indent=2, ensure_ascii=False) if as_json else
                   "\n\n".join(f"== tasks.{name}\n{format_report(r)}" for name, r in reports.items()))
        return
    report = debug_data(spec)
    click.echo(json.dumps(report, indent=2, ensure_ascii=False) if as_json else format_report(report))
