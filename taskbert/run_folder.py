"""The run folder a spec names, checked before anything is written: a new or empty folder,
an earlier run with ``--overwrite``, or, with ``--resume``, a run whose spec and data match."""

import json
import os
import tempfile

from .data.sources import same_data, source_identity
from .errors import SpecError
from .train import checkpoint as ckpt

RUN_FILES = ("spec.yaml", "metrics.jsonl", "manifest.json", "best", "checkpoint")
#: keys a resumed run may change: where files are and how progress is shown; data files
#: may move, their contents are compared by SHA-256 instead
RESUME_FREE_KEYS = ("output", "train.loggers", "data.train", "data.validation", "data.test")
PROBE_PREFIX = ".taskbert-probe-"


def _writable(folder):
    """Why ``folder`` cannot take new files (None when it can). A real probe: as root,
    ``os.access`` says yes to read-only file systems."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=PROBE_PREFIX, dir=folder))
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _inside(path, folder):
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _entries(out):
    return [e for e in (os.listdir(out) if os.path.isdir(out) else [])
            if not e.startswith(PROBE_PREFIX)]  # another rank's probe, gone in a moment


def holds_run(out, entries=None):
    """True when the folder ``out`` (listed as ``entries``, when known) holds a taskbert run."""
    return any(name in (_entries(out) if entries is None else entries) for name in RUN_FILES)


def check_output(spec, resume=False, overwrite=False):
    """The run folder must be a writable folder of its own (it holds none of the inputs,
    which ``--overwrite`` would delete) and must not hold another run unless ``--resume``
    or ``--overwrite`` says what to do with it. Returns :func:`check_resume`'s note when
    ``--resume`` finds nothing to continue and the run starts again (else None)."""
    out = spec.output
    if os.path.exists(out) and not os.path.isdir(out):
        raise SpecError(f"output: {out} is a file; give a folder path (new, empty, or an earlier run)")
    own_spec = resume and spec.path and os.path.abspath(spec.path) == os.path.abspath(os.path.join(out, "spec.yaml"))
    inputs = [] if own_spec else [("the spec", spec.path)]   # --resume may read the run's own copy
    inputs += [(f"data.{k}", p) for k, p in spec.data_files().items() if isinstance(p, str)]
    local_model = os.path.join(os.path.dirname(spec.path or "."), spec.encoder.model)
    if os.path.isdir(local_model):
        inputs.append(("encoder.model", local_model))
    for what, path in inputs:
        if path and os.path.exists(path) and _inside(path, out):
            raise SpecError(f"output: {out} holds {what} ({path}); the run folder must be a "
                            f"folder of its own, e.g. {os.path.join(out, 'run')}")
    parent = out
    while not os.path.exists(parent):
        parent = os.path.dirname(parent) or "."
    why = _writable(parent)
    if why:
        raise SpecError(f"output: cannot write in {parent} ({why}); choose a writable folder")
    entries = _entries(out)
    has_run = holds_run(out, entries)
    if resume:
        return check_resume(spec)
    if has_run and not overwrite:
        raise SpecError(f"output: {out} already holds a run; pass --resume to continue it "
                        f"or --overwrite to replace it")
    elif entries and not has_run:
        raise SpecError(f"output: {out} is not empty and holds no taskbert run "
                        f"({', '.join(sorted(entries)[:3])}...); choose a new or empty folder")


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _yaml_value(value):
    """``value`` as ``--set`` reads it (YAML flow style, one line)."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=1_000_000).strip()
    return text[:-4].strip() if text.endswith("\n...") or text.endswith("...") else text


def check_resume(spec):
    """``--resume`` needs a run, the same spec (but for the keys in ``RESUME_FREE_KEYS``) and
    the same data bytes as the run being continued. A run killed before its first complete
    checkpoint has nothing to continue: returns the one-line note that it starts again
    (else None)."""
    import yaml

    out = spec.output
    if not os.path.isdir(out) or not any(name in os.listdir(out) for name in RUN_FILES):
        raise SpecError(f"--resume: {out} holds no run to resume; leave out --resume to start one")
    folder, skipped = ckpt.latest_checkpoint(os.path.join(out, "checkpoint"))
    if folder is None:
        why = "; ".join(f"{os.path.basename(f)}: {r}" for f, r in skipped)
        return (f"--resume: {out} holds no complete checkpoint{f' ({why})' if why else ''}; "
                f"starting the run again from step 0")
    saved_path = os.path.join(out, "spec.yaml")
    try:
        with open(saved_path, encoding="utf-8") as fh:
            saved = _flat(yaml.safe_load(fh) or {})
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"--resume: {saved_path} is unreadable ({exc.__class__.__name__}); "
                        f"start the run again with --overwrite") from exc
    now = _flat(spec.to_dict())
    differ = [k for k in sorted(set(saved) | set(now))
              if not _resume_free(k) and saved.get(k) != now.get(k)]
    if differ:
        key = differ[0]
        flags = " ".join(f"--set {k}={_yaml_value(saved.get(k))}" for k in differ if k in saved)
        same = f"pass {flags} as the run did, " if flags and len(flags) < 200 else ""
        more = f" (and {len(differ) - 1} more keys differ)" if len(differ) > 1 else ""
        raise SpecError(f"--resume: {key} is {now.get(key)!r} but the run in {out} used {saved.get(key)!r}"
                        f"{more}; {same}resume with the run's own spec ({saved_path}) or start over "
                        f"with --overwrite")
    try:
        with open(os.path.join(out, "manifest.json"), encoding="utf-8") as fh:
            saved = {k: dict(v) for k, v in json.load(fh).get("data", {}).items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        saved = {}
    for split, path in spec.data_files().items():
        if split in saved and not same_data(saved[split], source_identity(path)):
            what = "SHA-256" if "sha256" in saved[split] else "fingerprint"
            raise SpecError(f"data.{split}: {path} changed since the run in {out} started "
                            f"({what} differs from manifest.json); resume with the same data "
                            f"or start over with --overwrite")


def _resume_free(key):
    """Whether ``--resume`` lets the (flattened) spec key ``key`` change: see ``RESUME_FREE_KEYS``;
    in a multi-task spec ``tasks.NAME.data.SPLIT`` too."""
    parts = key.split(".")
    if parts[0] == "tasks" and len(parts) > 2:
        key = ".".join(parts[2:])
    return key.startswith(RESUME_FREE_KEYS)
