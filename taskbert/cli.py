"""The ``taskbert`` command line (click).

Exit codes: 0 ok, 1 a run that failed, 2 bad input (one line on stderr, no traceback).
Plugins add commands through the ``taskbert_register_commands`` hook.
"""

import functools
import json
import os
import sys

import click
import yaml

from .errors import SpecError, TaskbertError

SET_HELP = "override a spec value, e.g. --set train.lr=3e-5 (repeatable)"


def friendly(fn):
    """Turn TaskbertError into one line and its exit code; keep tracebacks for bugs."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TaskbertError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
    return wrapper


class _Group(click.Group):
    """The ``taskbert`` group: plugin commands join it on first lookup, so ``main()`` and a
    test's ``CliRunner().invoke(cli, [...])`` see the same commands."""

    plugins_added = False

    def _plugin_commands(self):
        if not self.plugins_added:
            self.plugins_added = True
            _add_plugin_commands()

    def list_commands(self, ctx):
        self._plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx, name):
        if name not in self.commands:
            self._plugin_commands()
        return super().get_command(ctx, name)


@click.group(cls=_Group)
@click.version_option(package_name="taskbert")
def cli():
    """Fine-tune pretrained BERT-style encoders for NLP tasks from YAML specs."""


@cli.command()
@click.argument("spec_file", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("--resume", is_flag=True, help="continue the run in the output folder from its checkpoint")
@click.option("--overwrite", is_flag=True, help="replace a finished run in the output folder")
@click.option("--seeds", type=click.IntRange(min=1), default=None, metavar="N",
              help="train N seeds (train.seed, +1, ...) into OUTPUT/seed-K; report mean ± std")
@friendly
def run(spec_file, overrides, resume, overwrite, seeds):
    """Train and evaluate the model a spec describes."""
    from .run import execute, summary_line
    from .spec import load_spec

    if resume and overwrite:
        raise click.UsageError("--resume and --overwrite exclude each other")
    spec = load_spec(spec_file, overrides)
    if seeds:
        from .seeds import SUMMARY_FILE, run_seeds, summary_lines

        summary = run_seeds(spec, seeds, resume=resume, overwrite=overwrite,
                            echo=lambda line: click.echo(line, err=True))
        click.echo(f"done: {seeds} seeds in {spec.output} (summary: {SUMMARY_FILE})")
        for line in summary_lines(summary):
            click.echo(line)
        return
    metrics = execute(spec, resume=resume, overwrite=overwrite)
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun / accelerate launch the main process reports
    click.echo(f"done: {spec.output}")
    if metrics:
        click.echo(summary_line(metrics))


@cli.command()
@click.argument("spec_file", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@friendly
def validate(spec_file, overrides):
    """Check a spec and its data without loading model weights or training."""
    from .run import check_output, holds_run, prepare
    from .spec import load_spec

    spec = load_spec(spec_file, overrides)
    check_output(spec, overwrite=True)   # what `run` would refuse, bar an earlier run (below)
    prepared = prepare(spec)
    if holds_run(spec.output):
        prepared.warnings.append(f"output: {spec.output} already holds a run; taskbert run needs "
                                 f"--resume to continue it or --overwrite to replace it")
    for warning in prepared.warnings:
        click.echo(f"warning: {warning}", err=True)
    counts = ", ".join(f"{split} {len(exs)}" for split, exs in prepared.examples.items())
    click.echo(f"ok: {spec_file}: task {spec.task}, examples: {counts}")


@cli.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("input_file", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="write jsonl here (default: stdout)")
@click.option("--format", "fmt", help="reader for INPUT (default: .jsonl/.csv/.tsv by extension; else the "
              "task's own format, e.g. CoNLL for token_classification, or plain text lines; 'text' = one input a line)")
@click.option("--reader-option", "reader_opts", multiple=True, metavar="KEY=VALUE",
              help="a reader option, its value read as YAML, e.g. 'label_column=null'; default: the run's "
                   "data.reader_options when INPUT has the training data's format")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@friendly
def predict(run_dir, input_file, output, fmt, reader_opts, batch_size):
    """Predict with a trained run (or model or ONNX export folder) on INPUT_FILE; writes jsonl."""
    from .checkpoint import atomic_write
    from .data import check_file
    from .export import OnnxModel, is_export_folder
    from .predict import (find_model_folder, input_format, load_run, load_task, predict_examples,
                          read_inputs, run_format, run_reader_options)

    task, info = load_task(find_model_folder(run_dir))  # check input before loading weights
    guess = None if fmt else run_format(info, input_file)
    chosen = input_format(input_file, task, fmt or guess)
    options = run_reader_options(info, chosen, task)
    for item in reader_opts:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"--reader-option: expected KEY=VALUE, got {item!r}")
        options[key.strip()] = yaml.safe_load(value)
    check_file(input_file, "INPUT")   # a missing file first, then any note on how it is read
    if not fmt and chosen != "text" and os.path.splitext(input_file)[1].lower() == ".txt":
        click.echo(f"note: reading {input_file} as {chosen} ({'the run' if guess else 'the task'}'s format); "
                   f"--format text reads one input a line", err=True)
    examples = read_inputs(input_file, task, chosen, reader_options=options)
    if is_export_folder(run_dir):  # an ONNX export runs on ONNX Runtime
        predictions = OnnxModel(run_dir).predict(examples, batch_size)
    else:
        predictions = predict_examples(load_run(run_dir), examples, batch_size)
    text = "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in predictions)
    if output:
        atomic_write(output, text)
        click.echo(f"wrote {len(predictions)} predictions to {output}", err=True)
    else:
        click.echo(text, nl=False)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@friendly
def tasks(as_json):
    """List the registered tasks and the plugin that provides each."""
    from .plugins import registries

    regs = registries()
    rows = [{"name": n, "plugin": regs.tasks.owner(n), "description": regs.tasks.get(n).description}
            for n in regs.tasks.names()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    width = max((len(r["name"]) for r in rows), default=4)
    for r in rows:
        click.echo(f"{r['name']:<{width}}  {r['description']}  [{r['plugin']}]")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@friendly
def plugins(as_json):
    """List loaded plugins, where they come from and the hooks they implement."""
    from .plugins import plugin_list

    rows = plugin_list()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(f"{r['name']}  ({r['distribution']})  hooks: {', '.join(r['hooks'])}")


@cli.command()
@click.option("--task", "task_name", required=True, help="a registered task (see: taskbert tasks)")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="write here (default: stdout)")
@click.option("--force", is_flag=True, help="replace an existing file")
@friendly
def init(task_name, output, force):
    """Write a commented starter spec for a task, every option with its default."""
    from .checkpoint import atomic_write
    from .errors import SpecError
    from .scaffold import init_spec

    text = init_spec(task_name)
    if not output:
        click.echo(text, nl=False)
        return
    if os.path.exists(output) and not force:
        raise SpecError(f"{output}: exists; pass --force to replace it")
    atomic_write(output, text)
    click.echo(f"wrote {output}; next: taskbert validate {output}", err=True)


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
    from .debug import debug_data, format_report
    from .spec import load_spec

    report = debug_data(load_spec(spec_file, overrides))
    click.echo(json.dumps(report, indent=2, ensure_ascii=False) if as_json else format_report(report))


@cli.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", type=click.Path(file_okay=False), help="folder (default: RUN_DIR/report)")
@click.option("--field", help="prediction field to compare with the gold (default: the best match)")
@friendly
def report(run_dir, output, field):
    """Draw learning curves and confusion matrices (PNG) and write report.md for a run."""
    from .report import write_report

    result = write_report(run_dir, output, field)
    for path in result["files"]:
        click.echo(path)


@cli.command("new-plugin")
@click.argument("name")
@click.option("-o", "--output", default=".", show_default=True, type=click.Path(file_okay=False),
              help="folder to create the package in")
@click.option("--force", is_flag=True, help="write into an existing, non-empty folder")
@friendly
def new_plugin_cmd(name, output, force):
    """Write a plugin package NAME: pyproject with the entry point, a task module, a README
    and a passing test."""
    from .scaffold import new_plugin

    root, names, files = new_plugin(name, output, force)
    for path in files:
        click.echo(path)
    click.echo(f"next: pip install -e '{root}[test]' && taskbert tasks && "
               f"(cd {root} && python -m pytest -q)", err=True)


@cli.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True)
@click.option("-o", "--output", type=click.Path(file_okay=False), help="folder (default: RUN_DIR/onnx)")
@click.option("--exporter", type=click.Choice(["dynamo", "torchscript"]), default="dynamo",
              show_default=True, help="torch.export-based (needs onnxscript) or the legacy tracer")
@click.option("--sample", type=click.Path(dir_okay=False),
              help="inputs for the parity check (default: the run's validation data)")
@click.option("--opset", default=18, show_default=True, type=click.IntRange(min=14))
@friendly
def export(run_dir, fmt, output, exporter, sample, opset):
    """Export the best model with its tokenizer and label map; check ONNX Runtime
    against torch on a sample."""
    from .export import export_onnx, require, sample_examples

    require("onnx", "onnxruntime", *(("onnxscript",) if exporter == "dynamo" else ()))
    result = export_onnx(run_dir, sample_examples(run_dir, sample), output, exporter, opset)
    click.echo(f"wrote {result['folder']}: parity on {result['examples']} inputs: "
               f"{result['agreement']:.0%} same predictions, max |diff| {result['max_abs_diff']:.2e}")


@cli.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--max-bytes", default=1_000_000, show_default=True, type=click.IntRange(min=1),
              help="largest request body accepted")
@click.option("--max-inputs", default=64, show_default=True, type=click.IntRange(min=1),
              help="most inputs in one request")
@click.option("--quiet", is_flag=True, help="no access log")
@friendly
def serve(run_dir, host, port, max_bytes, max_inputs, quiet):
    """Serve predictions over HTTP: POST /predict {"inputs": [...]}, GET /health."""
    from .serve import make_server

    server = make_server(run_dir, host, port, max_bytes, max_inputs, quiet=quiet)
    bound_host, bound_port = server.server_address[:2]
    click.echo(f"serving {run_dir} ({server.predictor.task.name}, {server.predictor.backend}) on "
               f"http://{bound_host}:{bound_port}  POST /predict  GET /health", err=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def _add_plugin_commands():
    try:
        from .plugins import get_plugin_manager

        get_plugin_manager().hook.taskbert_register_commands(cli=cli)
    except TaskbertError:  # a broken plugin must not hide the built-in commands: --help
        pass               # still works; a command that needs the plugins stops with its line


def main():
    """Console-script entry point."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cli(prog_name="taskbert")


if __name__ == "__main__":
    main()
