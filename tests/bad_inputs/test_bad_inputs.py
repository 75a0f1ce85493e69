"""Every case of the bad-input table: ``taskbert run`` exits 2 with one line on stderr
naming the file and line or key, the bad value and what is allowed; no traceback; nothing
written to (or changed in) the run folder. The table in docs/reliability.md is this table."""

import hashlib
import json
import os
import re
import sys

import pytest
import yaml
from click.testing import CliRunner

sys.path.insert(0, os.path.dirname(__file__))
from bad_input_cases import BASE, CASES, DROP, GOOD, markdown_table  # noqa: E402

from taskbert.train import checkpoint as ckpt  # noqa: E402
from taskbert.cli import cli  # noqa: E402
from taskbert.plugins import registries  # noqa: E402
from taskbert.testing import TINY_WORDS, make_tokenizer, write_polarity_data  # noqa: E402

RELIABILITY_DOCS = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "reliability.md")


def merge(base, changes):
    """``base`` deep-updated with ``changes``; DROP deletes a key."""
    out = json.loads(json.dumps(base))
    for key, value in changes.items():
        if value == DROP:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def fill(value, encoder):
    if isinstance(value, dict):
        return {k: fill(v, encoder) for k, v in value.items()}
    return value.replace("{encoder}", encoder) if isinstance(value, str) else value


def write(path, content):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(content.encode("utf-8") if isinstance(content, str) else content)


# ------------------------------------------------------------------ special set-ups
# Each takes (folder, spec dict, encoder) and returns the spec dict to write (and may
# write files); the spec path is folder/spec.yaml unless the set-up returns a new one.

def _copy_encoder(folder, encoder, name, skip=()):
    target = os.path.join(folder, name)
    os.makedirs(target)
    for f in os.listdir(encoder):
        if f not in skip:
            with open(os.path.join(encoder, f), "rb") as src:
                write(os.path.join(target, f), src.read())
    return target


def encoder_no_tokenizer(folder, spec, encoder):
    spec["encoder"]["model"] = _copy_encoder(folder, encoder, "no-tok", skip=(
        "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"))
    return spec


def encoder_no_config(folder, spec, encoder):
    spec["encoder"]["model"] = _copy_encoder(folder, encoder, "no-config", skip=("config.json",))
    return spec


def encoder_bad_config(folder, spec, encoder):
    spec["encoder"]["model"] = _copy_encoder(folder, encoder, "bad-config")
    write(os.path.join(spec["encoder"]["model"], "config.json"), '{"model_type": "bert",')
    return spec


def encoder_no_weights(folder, spec, encoder):
    spec["encoder"]["model"] = _copy_encoder(folder, encoder, "no-weights", skip=("model.safetensors",))
    return spec


def _edit_config(folder, spec, encoder, name, **changes):
    spec["encoder"]["model"] = _copy_encoder(folder, encoder, name)
    cfg_file = os.path.join(spec["encoder"]["model"], "config.json")
    with open(cfg_file, encoding="utf-8") as fh:
        cfg = json.load(fh)
    write(cfg_file, json.dumps({**cfg, **changes}))
    return spec


def encoder_config_other_architecture(folder, spec, encoder):
    return _edit_config(folder, spec, encoder, "gpt2-config", model_type="gpt2")


def encoder_config_other_vocab(folder, spec, encoder):
    return _edit_config(folder, spec, encoder, "vocab-1000", vocab_size=1000)


def encoder_bigger_tokenizer(folder, spec, encoder):
    spec["encoder"]["tokenizer"] = os.path.join(folder, "big-tok")
    make_tokenizer(TINY_WORDS + ["zebra", "quokka", "yak"], spec["encoder"]["tokenizer"])
    return spec


def data_folder(folder, spec, encoder):
    os.makedirs(os.path.join(folder, "folder.jsonl"))
    spec["data"]["train"] = "folder.jsonl"
    return spec


def data_fifo(folder, spec, encoder):
    os.mkfifo(os.path.join(folder, "pipe.jsonl"))
    spec["data"]["validation"] = "pipe.jsonl"
    return spec


def data_symlink_loop(folder, spec, encoder):
    os.symlink("loop-b.jsonl", os.path.join(folder, "loop-a.jsonl"))
    os.symlink("loop-a.jsonl", os.path.join(folder, "loop-b.jsonl"))
    spec["data"]["validation"] = "loop-a.jsonl"
    return spec


def output_is_file(folder, spec, encoder):
    write(os.path.join(folder, "run"), "not a folder\n")
    return spec


def output_unwritable(folder, spec, encoder):
    if os.geteuid() == 0:  # root writes anywhere but a read-only file system
        if not os.path.isdir("/sys"):
            pytest.skip("running as root without /sys: no folder root cannot write")
        spec["output"] = "/sys/taskbert-bad-input-run"
    else:
        locked = os.path.join(folder, "locked")
        os.makedirs(locked)
        os.chmod(locked, 0o555)
        spec["output"] = os.path.join(locked, "run")
    return spec


def output_foreign(folder, spec, encoder):
    write(os.path.join(folder, "run", "notes.txt"), "mine\n")
    return spec


def _fake_run(folder, spec):
    """A run folder as a finished run leaves it, without training: spec.yaml, manifest
    (data hashes), metrics.jsonl, best/ and one complete checkpoint."""
    from taskbert.config.spec import spec_from_dict

    path = os.path.join(folder, "spec.yaml")
    resolved = spec_from_dict(spec, path)
    run = resolved.output
    write(os.path.join(run, "spec.yaml"), yaml.safe_dump(resolved.to_dict(), sort_keys=False))
    data = {s: {"path": p, "sha256": hashlib.sha256(open(p, "rb").read()).hexdigest()}
            for s, p in resolved.data.splits().items()}
    write(os.path.join(run, "manifest.json"), json.dumps({"data": data}))
    write(os.path.join(run, "metrics.jsonl"), '{"step": 3, "train/loss": 0.5}\n')
    write(os.path.join(run, "best", "model.safetensors"), b"weights")
    step = ckpt.step_folder(os.path.join(run, "checkpoint"), 3)
    files = {}
    for name in ckpt.STATE_FILES:
        write(os.path.join(step, name), name)
        files[name] = {"bytes": len(name), "sha256": hashlib.sha256(name.encode()).hexdigest()}
    write(os.path.join(step, ckpt.MANIFEST), json.dumps({"step": 3, "files": files}))


def finished_run(folder, spec, encoder):
    spec["train"]["lr"] = 0.001
    _fake_run(folder, spec)
    return spec


def finished_run_then_new_data(folder, spec, encoder):
    spec = finished_run(folder, spec, encoder)
    write_polarity_data(os.path.join(folder, "train.jsonl"), 40, 99)
    return spec


def missing_spec(folder, spec, encoder):
    return os.path.join(folder, "nowhere.yaml")


def _polarity_dataset(n=4):
    import datasets

    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    return datasets.Dataset.from_dict({"sentence": ["great film", "awful plot"] * (n // 2),
                                       "label": [1, 0] * (n // 2)}, features)


def hf_dataset_dict(folder, spec, encoder):
    import datasets

    ds = _polarity_dataset()
    datasets.DatasetDict({"train": ds, "test": ds}).save_to_disk(os.path.join(folder, "saved"))
    return merge(spec, {"data": {"train": "saved"}})


def hf_parquet(folder, spec, encoder):
    _polarity_dataset().to_parquet(os.path.join(folder, "train.parquet"))
    return merge(spec, {"data": {"train": "train.parquet"}})


SETUPS = {f.__name__: f for f in (
    hf_dataset_dict, hf_parquet,
    encoder_no_tokenizer, encoder_no_config, encoder_bad_config, encoder_no_weights, data_folder,
    encoder_config_other_architecture, encoder_config_other_vocab, encoder_bigger_tokenizer,
    data_fifo, data_symlink_loop,
    output_is_file, output_unwritable, output_foreign, finished_run, finished_run_then_new_data,
    missing_spec)}


def snapshot(folder):
    """Every path under ``folder`` with its bytes' hash (None for folders)."""
    if not os.path.exists(folder):
        return None
    if os.path.isfile(folder):
        return hashlib.sha256(open(folder, "rb").read()).hexdigest()
    out = {}
    for root, dirs, files in os.walk(folder):
        for d in dirs:
            out[os.path.relpath(os.path.join(root, d), folder)] = None
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                out[os.path.relpath(os.path.join(root, f), folder)] = hashlib.sha256(fh.read()).hexdigest()
    return out


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_exits_2_with_one_line(case, tmp_path, tiny_encoder):
    if case.task and case.task not in registries().tasks.names():
        pytest.skip(f"the {case.task} plugin is not installed")
    folder = str(tmp_path)
    write_polarity_data(tmp_path / "train.jsonl", 40, 1)
    write_polarity_data(tmp_path / "dev.jsonl", 12, 2)
    for name, content in case.files.items():
        write(os.path.join(folder, name), content)
    spec = fill(merge(BASE, case.spec), tiny_encoder)
    spec_path = os.path.join(folder, "spec.yaml")
    if case.setup:
        prepared = SETUPS[case.setup](folder, spec, tiny_encoder)
        spec, spec_path = (spec, prepared) if isinstance(prepared, str) else (prepared, spec_path)
    if case.spec_text is not None:
        write(spec_path, case.spec_text)
    elif os.path.basename(spec_path) == "spec.yaml":
        write(spec_path, yaml.safe_dump(spec, sort_keys=False))
    out = os.path.join(folder, spec.get("output", "run")) if isinstance(spec, dict) else folder
    before = snapshot(out)

    result = CliRunner().invoke(cli, ["run", spec_path, *case.args])

    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    assert lines[0].isprintable(), lines[0]   # no control or bidi characters from the input
    for part in case.expect:
        assert part.replace("{dir}", folder) in lines[0], (part, lines[0])
    assert "Traceback" not in result.output
    assert snapshot(out) == before, "the run folder changed"


def test_the_suite_has_at_least_30_distinct_cases():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names)) >= 30
    assert len({(c.what) for c in CASES}) == len(CASES)
    assert {c.group for c in CASES} == {"spec", "data", "encoder", "output", "resume"}


def test_readme_table_is_the_suite():
    with open(RELIABILITY_DOCS, encoding="utf-8") as fh:
        text = fh.read()
    assert markdown_table() in text, "docs/reliability.md bad-input table is stale: python tests/bad_inputs/bad_input_cases.py"
    counts = re.findall(r"(\d+) bad-input cases", text)
    assert counts and all(int(n) == len(CASES) for n in counts), counts
