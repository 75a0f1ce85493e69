"""Files from strangers: specs, data, checkpoints and models are read without running
code from them, and a run writes only inside its run folder.

The source audit parses every module of the package and the built-in plugins, so an
unsafe call added later fails here: ``yaml.safe_load`` only, ``torch.load`` only with
``weights_only=True``, no pickle/marshal/dill loading, no eval/exec, no literal
``trust_remote_code=True``, dynamic imports only where plugins and packaged models load.
"""

import ast
import os
import subprocess
import sys

import pytest
import yaml
from click.testing import CliRunner

import taskbert
from taskbert.cli import cli
from taskbert.testing import run_spec, write_polarity_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(taskbert.__file__)))
SOURCES = sorted(os.path.join(folder, f) for package in ("taskbert", "taskbert_plugins", "taskbert_cpu", "taskbert_cuda")
                 for folder, _, files in os.walk(os.path.join(ROOT, package)) for f in files
                 if f.endswith(".py") and "templates" not in folder)
assert len(SOURCES) > 50
#: files allowed a dynamic import, and why: the plugin manager imports DEFAULT_PLUGINS
#: (entry points load through pluggy); encoder.py imports a packaged model from ALIASES;
#: the public API loads the modules of its lazy names from a fixed table (taskbert._LAZY)
DYNAMIC_IMPORTS = {"taskbert/plugins/manager.py", "taskbert/encoder.py", "taskbert/__init__.py"}
UNSAFE_YAML = {"load", "load_all", "unsafe_load", "unsafe_load_all", "full_load", "full_load_all",
               "Loader", "UnsafeLoader", "FullLoader"}
UNPICKLERS = {"pickle": {"load", "loads", "Unpickler"}, "_pickle": {"load", "loads", "Unpickler"},
              "marshal": {"load", "loads"}, "shelve": {"open"}, "dill": None, "cloudpickle": None,
              "joblib": {"load"}}


def _dotted(node):
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _true(node):
    return isinstance(node, ast.Constant) and node.value is True


def audit(source, filename="<source>"):
    """``[(line, problem)]`` of unsafe file handling in Python ``source``."""
    problems = []
    path = os.path.normpath(filename).replace(os.sep, "/")
    dynamic_ok = any(path == d or path.endswith("/" + d) for d in DYNAMIC_IMPORTS)
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.ImportFrom) and node.module:
            top = node.module.split(".")[0]
            names = {a.name for a in node.names}
            if top == "yaml" and names & UNSAFE_YAML:
                problems.append((node.lineno, f"from yaml import {sorted(names & UNSAFE_YAML)[0]}"))
            if top in UNPICKLERS and (UNPICKLERS[top] is None or names & UNPICKLERS[top]):
                problems.append((node.lineno, f"from {node.module} import an unpickler"))
            if top == "torch" and "load" in names:
                problems.append((node.lineno, "from torch import load (call torch.load with weights_only=True)"))
        if isinstance(node, ast.Attribute):
            name = _dotted(node)
            if name and name.split(".")[0] == "yaml" and node.attr in UNSAFE_YAML:
                problems.append((node.lineno, f"{name}: use yaml.safe_load"))
            if name and name.split(".")[0] in UNPICKLERS:
                allowed = UNPICKLERS[name.split(".")[0]]
                if allowed is None or node.attr in allowed:
                    problems.append((node.lineno, f"{name}: unpickling runs code from the file"))
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func) or ""
        keywords = {k.arg: k.value for k in node.keywords}
        if name == "torch.load" and not _true(keywords.get("weights_only")):
            problems.append((node.lineno, "torch.load without weights_only=True"))
        if name in ("np.load", "numpy.load") and _true(keywords.get("allow_pickle")):
            problems.append((node.lineno, f"{name} with allow_pickle=True"))
        if name in ("eval", "exec", "compile"):
            problems.append((node.lineno, f"{name}() runs text as code"))
        if _true(keywords.get("trust_remote_code")):
            problems.append((node.lineno, "trust_remote_code=True (only the spec may set it)"))
        if _true(keywords.get("shell")):
            problems.append((node.lineno, "shell=True"))
        if name in ("importlib.import_module", "__import__", "import_module") and not dynamic_ok:
            problems.append((node.lineno, f"{name}: only {', '.join(sorted(DYNAMIC_IMPORTS))} import by name"))
    return problems


def test_the_audit_catches_unsafe_calls():
    bad = {
        "import torch\ntorch.load(p)\n": "torch.load without weights_only=True",
        "import torch\ntorch.load(p, weights_only=False)\n": "torch.load without weights_only=True",
        "import yaml\nyaml.load(s, Loader=yaml.Loader)\n": "yaml.load: use yaml.safe_load",
        "from yaml import unsafe_load\n": "from yaml import unsafe_load",
        "import pickle\npickle.loads(b)\n": "pickle.loads: unpickling runs code from the file",
        "eval(text)\n": "eval() runs text as code",
        "M.from_pretrained(n, trust_remote_code=True)\n": "trust_remote_code=True (only the spec may set it)",
        "import importlib\nimportlib.import_module(spec.task)\n": "importlib.import_module: only",
    }
    for source, problem in bad.items():
        found = audit(source, "trainer.py")
        assert found and problem in found[0][1], (source, found)
    fine = ("import torch\ntorch.load(p, weights_only=True)\nimport yaml\nyaml.safe_load(s)\n"
            "import pickle\nexcept_class = pickle.UnpicklingError\n"
            "M.from_pretrained(n, trust_remote_code=spec.trust_remote_code)\n")
    assert audit(fine, "trainer.py") == []
    dynamic = "import importlib\nimportlib.import_module(name)\n"
    assert audit(dynamic, "taskbert/__init__.py") == []
    assert audit(dynamic, "taskbert_plugins/qa/__init__.py")     # not every __init__.py


@pytest.mark.parametrize("path", SOURCES, ids=[os.path.relpath(p, ROOT) for p in SOURCES])
def test_source_reads_files_safely(path):
    with open(path, encoding="utf-8") as fh:
        problems = audit(fh.read(), path)
    assert not problems, "\n".join(f"{os.path.relpath(path, ROOT)}:{line}: {what}" for line, what in problems)


def test_trust_remote_code_comes_only_from_the_spec(monkeypatch, tiny_encoder, tmp_path):
    """The encoder loader passes the spec's value through; off unless the spec sets it."""
    import transformers

    from taskbert.encoder import load_model, load_tokenizer
    from taskbert.config.spec import spec_from_dict

    seen = []
    monkeypatch.setattr(transformers.AutoModel, "from_pretrained",
                        classmethod(lambda cls, name, **kw: seen.append(kw.get("trust_remote_code"))))
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained",
                        classmethod(lambda cls, name, **kw: seen.append(kw.get("trust_remote_code"))))
    for setting in (None, False, True):
        encoder = {"model": tiny_encoder} if setting is None else {"model": tiny_encoder,
                                                                    "trust_remote_code": setting}
        spec = spec_from_dict({"task": "sentence_classification", "encoder": encoder},
                              str(tmp_path / "spec.yaml"))
        load_model(tiny_encoder, spec.encoder)
        try:
            load_tokenizer(tiny_encoder, spec.encoder)
        except Exception:  # the stand-in returns no tokenizer; only the argument matters
            pass
    assert seen == [False, False, False, False, True, True]


def test_a_spec_cannot_name_a_module_to_import(tmp_path, monkeypatch):
    """Names in a spec are looked up in registries; nothing is imported by name. (The
    ``this`` module prints the Zen of Python when imported: it must stay unimported.)"""
    assert "this" not in sys.modules
    for spec in ({"task": "this"}, {"task": "sentence_classification", "data": {"format": "this"}},
                 {"task": "taskbert_plugins.classification:SentenceClassification"}):
        path = tmp_path / "spec.yaml"
        path.write_text(yaml.safe_dump(spec))
        result = CliRunner().invoke(cli, ["validate", str(path)])
        assert result.exit_code == 2 and "unknown" in result.stderr, result.output
    # the plugin environment variables filter entry points; they import nothing by name
    env = dict(os.environ, TASKBERT_LOAD_PLUGINS="this", TASKBERT_DISABLE_PLUGINS="")
    probe = subprocess.run([sys.executable, "-c", "import sys; from taskbert.plugins import registries; "
                            "registries(); print('this' in sys.modules)"],
                           env=env, capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0 and probe.stdout.strip() == "False", probe.stdout + probe.stderr
    assert "this" not in sys.modules


def test_a_run_writes_only_inside_its_run_folder(tmp_path, tiny_encoder, monkeypatch):
    """Every file a run makes is under ``output``; weights are safetensors."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)  # nothing lands in the current folder either
    train = write_polarity_data(tmp_path / "train.jsonl", 40, 1)
    spec = {"task": "sentence_classification", "encoder": {"model": tiny_encoder, "max_length": 32},
            "data": {"train": train, "validation": train},
            "train": {"epochs": 1, "batch_size": 8, "save_every": 2, "loggers": ["csv"]},
            "output": str(tmp_path / "run")}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))

    def listing():
        return sorted(os.path.relpath(os.path.join(r, f), tmp_path) for r, _, fs in os.walk(tmp_path)
                      for f in fs if not os.path.join(r, f).startswith(str(tmp_path / "run")))

    before = listing()
    result = CliRunner().invoke(cli, ["run", str(tmp_path / "spec.yaml")])
    assert result.exit_code == 0, result.output
    assert listing() == before and os.listdir(work) == []
    written = [os.path.relpath(os.path.join(r, f), tmp_path / "run")
               for r, _, fs in os.walk(tmp_path / "run") for f in fs]
    weights = [w for w in written if w.endswith((".bin", ".pt", ".pth", ".pkl", ".safetensors"))]
    assert weights and all(w.endswith(".safetensors") or os.path.basename(w) == "optimizer.pt"
                           for w in weights), weights


def test_run_files_follow_the_umask(tmp_path, tiny_encoder):
    """Temp-then-rename writes keep the permissions a plain write would have: with umask 022 a
    team can read a shared run (mkstemp/mkdtemp alone make 0600 files and 0700 folders)."""
    import stat

    train = write_polarity_data(tmp_path / "train.jsonl", 40, 1)
    spec = {"task": "sentence_classification", "encoder": {"model": tiny_encoder, "max_length": 32},
            "data": {"train": train, "validation": train},
            "train": {"epochs": 1, "batch_size": 16, "loggers": [], "save_every": 2},
            "output": str(tmp_path / "run")}
    old = os.umask(0o022)
    try:
        _, run_dir = run_spec(spec, str(tmp_path))
    finally:
        os.umask(old)
    private = []
    for folder, dirs, files in os.walk(run_dir):
        for name in dirs + files:
            mode = os.stat(os.path.join(folder, name)).st_mode
            if not mode & stat.S_IROTH:
                private.append((os.path.relpath(os.path.join(folder, name), run_dir), oct(mode & 0o777)))
    assert not private, private
    assert os.path.exists(os.path.join(run_dir, "best", "model.safetensors"))
