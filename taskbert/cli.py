"""The ``taskbert`` command line (click).

Exit codes: 0 ok, 1 a run that failed, 2 bad input (one line on stderr, no traceback).
Plugins add commands through the ``taskbert_register_commands`` hook.
"""

import functools
import json
import os
import sys

import click

from .errors import TaskbertError

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


@click.group()
@click.version_option(package_name="taskbert")
def cli():
    """Fine-tune pretrained BERT-style encoders for NLP tasks from YAML specs."""


@cli.command()
@click.argument("spec_file", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("--resume", is_flag=True, help="continue the run in the output folder from its checkpoint")
@click.option("--overwrite", is_flag=True, help="replace a finished run in the output folder")
@friendly
def run(spec_file, overrides, resume, overwrite):
    """Train and evaluate the model a spec describes."""
    from .run import execute, summary_line
    from .spec import load_spec

    if resume and overwrite:
        raise click.UsageError("--resume and --overwrite exclude each other")
    spec = load_spec(spec_file, overrides)
    metrics = execute(spec, resume=resume, overwrite=overwrite)
    click.echo(f"done: {spec.output}")
    if metrics:
        click.echo(summary_line(metrics))


@cli.command()
@click.argument("spec_file", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@friendly
def validate(spec_file, overrides):
    """Check a spec and its data without loading model weights or training."""
    from .run import prepare
    from .spec import load_spec

    spec = load_spec(spec_file, overrides)
    prepared = prepare(spec)
    for warning in prepared.warnings:
        click.echo(f"warning: {warning}", err=True)
    counts = ", ".join(f"{split} {len(exs)}" for split, exs in prepared.examples.items())
    click.echo(f"ok: {spec_file}: task {spec.task}, examples: {counts}")


@cli.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("input_file", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="write jsonl here (default: stdout)")
@click.option("--format", "fmt", help="reader for INPUT (default: from the extension; .txt = plain lines)")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@friendly
def predict(run_dir, input_file, output, fmt, batch_size):
    """Predict with a trained run (or model folder) on INPUT_FILE; writes jsonl."""
    from .checkpoint import atomic_write
    from .predict import load_run, predict_examples, read_inputs, find_model_folder, load_task

    task, _ = load_task(find_model_folder(run_dir))  # check input before loading weights
    examples = read_inputs(input_file, task, fmt)
    loaded = load_run(run_dir)
    predictions = predict_examples(loaded, examples, batch_size)
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


def _add_plugin_commands():
    try:
        from .plugins import get_plugin_manager

        get_plugin_manager().hook.taskbert_register_commands(cli=cli)
    except TaskbertError as exc:  # a broken plugin must not hide the built-in commands
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)


def main():
    """Console-script entry point."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _add_plugin_commands()
    cli(prog_name="taskbert")


if __name__ == "__main__":
    main()
