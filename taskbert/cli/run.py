"""``taskbert run`` and ``taskbert validate``: train the model a spec describes, or check
the spec and its data without loading weights."""

import os

import click

from ..errors import printable
from .main import SET_HELP, cli, friendly


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
    from ..config.spec import load_spec
    from ..run import execute
    from .numbers import summary_line

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
    from ..config.spec import load_spec
    from ..run import prepare
    from ..run_folder import check_output, holds_run

    spec = load_spec(spec_file, overrides)
    check_output(spec, overwrite=True)   # what `run` would refuse, bar an earlier run (below)
    prepared = prepare(spec)
    if holds_run(spec.output):
        prepared.warnings.append(f"output: {spec.output} already holds a run; taskbert run needs "
                                 f"--resume to continue it or --overwrite to replace it")
    for warning in prepared.warnings:
        click.echo(f"warning: {printable(warning)}", err=True)   # it may quote the data
    counts = ", ".join(f"{split} {len(exs)}" for split, exs in prepared.examples.items())
    if spec.tasks:   # several tasks: examples counted per task
        counts = "; ".join(f"{name} ({m.task}): " + ", ".join(
            f"{split} {sum(1 for i, _ in exs if i == k)}" for split, exs in prepared.examples.items()
            if any(i == k for i, _ in exs)) for k, (name, m) in enumerate(spec.tasks.items()))
        click.echo(f"ok: {spec_file}: tasks {counts}")
        return
    click.echo(f"ok: {spec_file}: task {spec.task}, examples: {counts}")
