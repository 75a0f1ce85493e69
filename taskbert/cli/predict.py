"""``taskbert predict``: a trained run, model folder or ONNX export on an input file."""

import json
import os

import click

from .main import cli, friendly


def looks_like_sentences(path, lines=1000):
    """Whether a ``.txt`` file is, by its first ``lines`` lines, text one sentence a line rather
    than CoNLL: no blank line at all, and at least two lines of three or more words (a CoNLL
    file of several sentences has blank lines; its lines hold a word and its columns)."""
    wide, blank = 0, False
    with open(path, encoding="utf-8", errors="replace") as fh:
        for _, line in zip(range(lines), fh):
            blank = blank or not line.strip()
            wide += len(line.split()) >= 3
    return not blank and wide >= 2


@cli.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("input_file", type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="write jsonl here (default: stdout)")
@click.option("--format", "fmt", help="reader for INPUT (default: .jsonl/.csv/.tsv by extension; else the "
              "task's own format, e.g. CoNLL for token_classification, or plain text lines; 'text' = one input a line)")
@click.option("--reader-option", "reader_opts", multiple=True, metavar="KEY=VALUE",
              help="a reader option, its value read as YAML, e.g. 'label_column=null'; default: the run's "
                   "data.reader_options when INPUT has the training data's format")
@click.option("--task-option", "task_opts", multiple=True, metavar="KEY=VALUE",
              help="change a task option that does not shape the model (input field names, decoding "
                   "limits), its value read as YAML, e.g. 'text_field=review'; others are refused")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--task", "task_name", metavar="NAME", help="the task of a run of several tasks (its tasks: NAME)")
@friendly
def predict(run_dir, input_file, output, fmt, reader_opts, task_opts, batch_size, task_name):
    """Predict with a trained run (or model or ONNX export folder) on INPUT_FILE; writes jsonl."""
    from ..data.splits import check_file
    from ..errors import DataError
    from ..io import atomic_write
    from .export import OnnxModel, is_export_folder
    from .runs import (
        find_model_folder,
        input_format,
        key_values,
        load_run,
        load_task,
        predict_examples,
        read_inputs,
        run_format,
        run_reader_options,
        task_folder,
        task_option_overrides,
    )

    run_dir = task_folder(run_dir, task_name)
    changed = task_option_overrides(task_opts)
    task, info = load_task(find_model_folder(run_dir), changed)  # check input before loading weights
    guess = None if fmt else run_format(info, input_file)
    chosen = input_format(input_file, task, fmt or guess)
    options = run_reader_options(info, chosen, task)
    options.update(key_values(reader_opts, "--reader-option"))
    check_file(input_file, "INPUT")   # a missing file first, then any note on how it is read
    if not fmt and chosen != "text" and os.path.splitext(input_file)[1].lower() == ".txt":
        if chosen == "conll" and looks_like_sentences(input_file):
            raise DataError(f"INPUT: {input_file} would be read as CoNLL (the {'run' if guess else 'task'}'s "
                            f"format: a word a line, blank lines between sentences), but it has no blank line "
                            f"and its lines hold several words: it looks like one sentence a line; pass "
                            f"--format text (or --format conll to read it as CoNLL all the same)")
        click.echo(f"note: reading {input_file} as {chosen} ({'the run' if guess else 'the task'}'s format); "
                   f"--format text reads one input a line", err=True)
    examples = read_inputs(input_file, task, chosen, reader_options=options)
    if is_export_folder(run_dir):  # an ONNX export runs on ONNX Runtime
        predictions = OnnxModel(run_dir, task_options=changed).predict(examples, batch_size)
    else:
        predictions = predict_examples(load_run(run_dir, changed), examples, batch_size)
    text = "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in predictions)
    if output:
        atomic_write(output, text)
        click.echo(f"wrote {len(predictions)} predictions to {output}", err=True)
    else:
        click.echo(text, nl=False)
