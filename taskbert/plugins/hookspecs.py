"""Every hook a taskbert plugin can implement.

Registration hooks receive a ``register`` callback; the registries keep the tables.
Lifecycle hooks are called with keyword arguments in the order listed here.
Grow a hook by adding arguments, never by renaming one.
"""

import pluggy

hookspec = pluggy.HookspecMarker("taskbert")
hookimpl = pluggy.HookimplMarker("taskbert")


@hookspec
def taskbert_register_tasks(register):
    """Register Task classes: call ``register(TaskClass)``; the key is ``TaskClass.name``."""


@hookspec
def taskbert_register_readers(register):
    """Register data readers: call ``register(name, reader)``.

    A reader is a callable ``reader(path, options) -> iterator of (line_number, record)``
    where ``record`` is a dict; it raises ``DataError`` naming the file and line.
    """


@hookspec
def taskbert_register_metrics(register):
    """Register metrics: call ``register(name, fn)`` with ``fn(golds, preds) -> float``."""


@hookspec
def taskbert_register_loggers(register):
    """Register metric loggers for ``train.loggers``: call ``register(name, LoggerClass)``.

    ``LoggerClass(trainer)`` is made when training starts; its ``log(step, metrics)`` gets
    every record and ``close()`` runs after the final evaluation. An optional class method
    ``check(where)`` runs at spec validation (before weights load) and raises ``SpecError``,
    e.g. when an optional dependency is missing.
    """


@hookspec
def taskbert_register_commands(cli):
    """Add subcommands to the ``taskbert`` click group ``cli``."""


@hookspec
def taskbert_check_spec(spec):
    """Called by ``validate`` and ``run`` once the spec is read and its task is known, before
    any data is read or weights load: raise ``SpecError`` for a problem this plugin can see
    already (a setting of its own, an environment variable, a dependency it needs)."""


@hookspec(firstresult=True)
def taskbert_encoder_source(spec):
    """Return a :class:`~taskbert.EncoderSource` for ``spec.encoder``, or None to pass.

    firstresult: the first plugin that returns one wins. The built-in source (Hugging Face
    ids, local folders, packaged aliases) is ``trylast``, so a plugin can serve a model source
    of its own ahead of it (``in-house://tiny``, an encoder built from scratch). Called once per
    command after ``taskbert_check_spec``; the core then calls the source's ``check`` before any
    data is read and its ``load`` once the data is read.
    """


@hookspec
def taskbert_prepare_model(model, device, phase):
    """Called once a :class:`~taskbert.TaskModel` is on ``device`` and before its first batch.

    ``phase`` is ``"train"`` (the trainer, before the optimizer is built) or ``"predict"``
    (``predict``, ``serve``, ``export``'s parity sample: eval mode, no gradients). A plugin
    may change how the model computes, never what it computes: swap modules for exact
    equivalents, or set ``model.encoder_pass`` (a callable ``(encoder, batch, positions) ->
    encoder output``; ``positions`` is what :meth:`Head.read_positions` returned), keeping
    the pass it replaces for the cases it does not handle. Called after the encoder source's ``load``
    and before ``taskbert_train_start``.
    """


@hookspec
def taskbert_train_start(trainer):
    """Called once before the first optimizer step (after a resume has been applied)."""


@hookspec
def taskbert_log_metrics(trainer, step, metrics):
    """Called with a dict of metrics at every log step and after every evaluation.

    Loggers (console, CSV, TensorBoard...) implement this hook. Only the main process
    of a distributed run calls it.
    """


@hookspec
def taskbert_train_end(trainer, metrics):
    """Called once after training with the final metrics of every evaluated split."""


@hookspec
def taskbert_report_sections(run_dir, out_dir, task, history, predictions):
    """``taskbert report``: return markdown lines to add to ``report.md`` (a list of strings),
    or None. Called once per report, after the curves and confusion matrices, with the run's
    ``metrics.jsonl`` records (``history``), its ``predictions.jsonl`` lines and its task as
    ``best/taskbert.json`` restores it (None without a best model); a plugin may draw files
    into ``out_dir`` and link them. Sections appear in plugin call order.
    """
