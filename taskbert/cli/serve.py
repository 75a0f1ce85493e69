"""``taskbert serve RUN_DIR``: an HTTP JSON prediction server (Starlette on uvicorn, the
``serve`` extra; the app is in :mod:`.serve_app`, the micro-batcher in :mod:`.batching`).

* ``POST /predict`` with ``{"inputs": ["a text", {"text": "a record"}, ...]}`` answers
  ``{"predictions": [...]}``, one per input, the same dicts ``taskbert predict`` writes.
  A string goes through the task's ``record_from_text``; an object is a record as in a
  jsonl file.
* ``GET /health`` answers ``{"status": "ok", "task": ..., "backend": ...}``; ``GET /ready``
  503 until the model is loaded; ``GET /metrics`` request counts, latency, batch sizes;
  ``GET /openapi.json`` the API in OpenAPI 3.

Bad requests get a 4xx status and ``{"error": "one line"}``, never a crash: a missing or
oversized body (411/413, ``--max-bytes``), too many inputs (413, ``--max-inputs``), a body
that is not UTF-8 JSON or has the wrong shape, or an input the task rejects (400), a
content type other than JSON (415; text/plain and curl's default form type are read as JSON), an unknown
path (404) or method (405). Concurrent requests are batched together (``--max-batch``
inputs per model call, waiting at most ``--max-wait-ms``); a full queue (``--max-queue``)
answers 503 with ``Retry-After``. SIGTERM stops accepting, answers what is in flight and
exits within ``--shutdown-timeout`` seconds. RUN_DIR may also be an ONNX export folder
(``taskbert export``), served with ONNX Runtime.
"""

import json
import sys

import click

from ..errors import DataError, SpecError, TaskbertError
from .batching import MAX_BATCH, MAX_QUEUE, MAX_WAIT_MS
from .main import cli, friendly

MAX_BYTES = 1_000_000
MAX_INPUTS = 64
BATCH_SIZE = 64   # inputs per forward pass within one model call
INSTALL_HINT = "pip install 'taskbert[serve]'"
JSON_TYPES = ("application/json", "text/plain", "application/x-www-form-urlencoded")


class BadRequest(Exception):
    """A request the client must fix: HTTP ``status`` and a one-line message."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class Predictor:
    """A run folder (torch) or an ONNX export folder behind one ``predict(examples)``; a run of
    several tasks (``tasks:``) is one Predictor per task in ``members``, and its examples are
    ``(task name, example)`` pairs (:meth:`task_for` picks the task of a request)."""

    def __init__(self, path, batch_size=BATCH_SIZE, task_options=None):
        from .export import OnnxModel, is_export_folder
        from .runs import run_tasks

        self.batch_size, self.members = batch_size, None
        folders = run_tasks(path)
        if folders is not None:
            self.members = {name: Predictor(folder, batch_size, task_options) for name, folder in folders.items()}
            self.backend, self.task = "torch", None
            self.name = "tasks " + ", ".join(f"{n} ({p.task.name})" for n, p in self.members.items())
            return
        if is_export_folder(path):
            self.backend = "onnxruntime"
            self._onnx = OnnxModel(path, task_options=task_options)
            self.task = self._onnx.task
        else:
            from .runs import load_run

            self.backend = "torch"
            self._loaded = load_run(path, task_options)
            self.task = self._loaded.task
        self.name = self.task.name   # for /health and the log

    def task_for(self, payload):
        """The task of a request body: the one task, or the member its ``"task"`` names."""
        if self.members is None:
            return self.task
        name = payload.get("task") if isinstance(payload, dict) else None
        if name not in self.members:
            given = "missing" if name is None else f"{name!r} is not a task of this run"
            raise BadRequest(400, f"task: {given}; send {{\"task\": NAME, \"inputs\": [...]}} with NAME one "
                                  f"of: {', '.join(self.members)}")
        return self.members[name].task

    def examples_from(self, payload, max_inputs):
        """The examples of a request body (:func:`parse_inputs` with this predictor's task), as
        :meth:`predict` takes them: ``(task name, example)`` pairs for several tasks, whose
        body names its ``task``."""
        if self.members is None:
            return parse_inputs(payload, self.task, max_inputs)
        examples = parse_inputs(payload, self.task_for(payload), max_inputs, ("inputs", "task"))
        return [(payload["task"], ex) for ex in examples]

    def predict(self, examples):
        """One prediction dict per example (per ``(task name, example)`` pair for several tasks)."""
        if self.members is not None:   # each task's examples in one call, answers put back in order
            out, by_task = [None] * len(examples), {}
            for i, (name, example) in enumerate(examples):
                by_task.setdefault(name, []).append((i, example))
            for name, items in by_task.items():
                for (i, _), pred in zip(items, self.members[name].predict([ex for _, ex in items])):
                    out[i] = pred
            return out
        if self.backend == "onnxruntime":
            return self._onnx.predict(examples, self.batch_size)
        from .runs import predict_examples

        return predict_examples(self._loaded, examples, self.batch_size)


def parse_inputs(payload, task, max_inputs, keys=("inputs",)):
    """Examples from a request body's JSON; BadRequest naming the bad part. ``keys``: the
    body's allowed keys (a run of several tasks takes ``task`` too)."""
    if not isinstance(payload, dict) or "inputs" not in payload:
        raise BadRequest(400, 'body: expected a JSON object {"inputs": [text or record, ...]}')
    extra = sorted(set(payload) - set(keys))
    if extra:
        raise BadRequest(400, f"body: unknown key {extra[0]!r}; allowed: {', '.join(keys)}")
    inputs = payload["inputs"]
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest(400, "inputs: expected a non-empty list of texts or records")
    if len(inputs) > max_inputs:
        raise BadRequest(413, f"inputs: {len(inputs)} items, more than the limit of {max_inputs} "
                              f"(taskbert serve --max-inputs)")
    examples = []
    for i, item in enumerate(inputs):
        if isinstance(item, str):
            try:
                record = task.record_from_text(item)
            except DataError as exc:   # e.g. a pair line without its tab: the client's input
                raise BadRequest(400, f"inputs[{i}]: {exc}") from exc
        elif isinstance(item, dict):
            record = item
        else:
            raise BadRequest(400, f"inputs[{i}]: expected a string or an object, got {json.dumps(item)[:60]}")
        try:
            example = task.example_from_record(record, f"inputs[{i}]", labelled=False)
        except DataError as exc:
            raise BadRequest(400, str(exc)) from exc
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a task without checks
            raise BadRequest(400, f"inputs[{i}]: not a valid input for task {task.name!r}: {exc}") from exc
        if example is None:
            raise BadRequest(400, f"inputs[{i}]: the task skips this record; nothing to predict")
        examples.append(example)
    return examples


def check_folder(path, task_options=None):
    """Refuse, before binding a port or loading weights, a folder that is neither a run nor
    an export, or a ``--task-option`` its task does not take (SpecError, exit 2)."""
    from .export import is_export_folder
    from .runs import find_model_folder, load_task, run_tasks

    for folder in (run_tasks(path) or {None: path}).values():
        if not is_export_folder(folder):
            load_task(find_model_folder(folder), task_options)


def serve_state(path, max_bytes=MAX_BYTES, max_inputs=MAX_INPUTS, batch_size=BATCH_SIZE, task_options=None,
                max_batch=MAX_BATCH, max_wait_ms=MAX_WAIT_MS, max_queue=MAX_QUEUE, **hooks):
    """:func:`check_folder`, then the :class:`.serve_app.ServeState` that both the command
    and :func:`start_server` serve (``hooks``: ``on_load_error``, ``quiet``)."""
    from .serve_app import ServeState

    check_folder(path, task_options)
    return ServeState(path, max_bytes, max_inputs, batch_size, task_options, max_batch, max_wait_ms, max_queue,
                      **hooks)


def start_server(path, host="127.0.0.1", port=0, max_bytes=MAX_BYTES, max_inputs=MAX_INPUTS, batch_size=BATCH_SIZE,
                 task_options=None, max_batch=MAX_BATCH, max_wait_ms=MAX_WAIT_MS, max_queue=MAX_QUEUE, **server_options):
    """Serve ``path`` on a background thread (tests, benchmarks); returns a
    :class:`.serve_app.ThreadedServer` once the model is loaded (``.address``, ``.stop()``)."""
    from .serve_app import ThreadedServer

    state = serve_state(path, max_bytes, max_inputs, batch_size, task_options, max_batch, max_wait_ms, max_queue)
    return ThreadedServer(state, host, port, **server_options).wait_ready()


@cli.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--max-bytes", default=MAX_BYTES, show_default=True, type=click.IntRange(min=1),
              help="largest request body accepted")
@click.option("--max-inputs", default=MAX_INPUTS, show_default=True, type=click.IntRange(min=1),
              help="most inputs in one request")
@click.option("--max-batch", default=MAX_BATCH, show_default=True, type=click.IntRange(min=1),
              help="most inputs in one model call, gathered from concurrent requests (1: no batching)")
@click.option("--max-wait-ms", default=MAX_WAIT_MS, show_default=True, type=click.FloatRange(min=0),
              help="longest a request waits for others to share its model call (0: take what is queued)")
@click.option("--max-queue", default=MAX_QUEUE, show_default=True, type=click.IntRange(min=1),
              help="requests waiting for the model before new ones get 503 + Retry-After")
@click.option("--max-connections", default=1024, show_default=True, type=click.IntRange(min=1),
              help="open connections at most (uvicorn answers 503 beyond)")
@click.option("--shutdown-timeout", default=10.0, show_default=True, type=click.FloatRange(min=0),
              help="seconds in-flight requests get after SIGTERM")
@click.option("--task-option", "task_opts", multiple=True, metavar="KEY=VALUE",
              help="change a task option that does not shape the model, as for taskbert predict")
@click.option("--quiet", is_flag=True, help="no access log")
@click.option("--task", "task_name", metavar="NAME",
              help="serve one task of a run of several (default: all, chosen by each request's \"task\")")
@friendly
def serve(run_dir, host, port, max_bytes, max_inputs, max_batch, max_wait_ms, max_queue, max_connections,
          shutdown_timeout, task_opts, quiet, task_name):
    """Serve predictions over HTTP: POST /predict {"inputs": [...]}, GET /health, /ready,
    /metrics, /openapi.json."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise SpecError(f"taskbert serve needs the serve extra ({exc.name} is not installed): "
                        f"{INSTALL_HINT}") from None
    from .runs import task_folder, task_option_overrides
    from .serve_app import bind_socket, uvicorn_server

    if task_name is not None:   # one task of a run of several
        run_dir = task_folder(run_dir, task_name)

    server = None

    def stop_on_load_error(exc):
        server.should_exit = True

    # checks the folder before the port is bound; the model loads once uvicorn starts
    state = serve_state(run_dir, max_bytes, max_inputs, BATCH_SIZE, task_option_overrides(task_opts), max_batch,
                        max_wait_ms, max_queue, on_load_error=stop_on_load_error, quiet=quiet)
    backlog = 2048
    try:
        sock = bind_socket(host, port, backlog)
    except OSError as exc:
        raise SpecError(f"--host/--port: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    server = uvicorn_server(state, backlog, max_connections, shutdown_timeout, quiet)
    bound_host, bound_port = sock.getsockname()[:2]
    click.echo(f"serving {run_dir} on http://{bound_host}:{bound_port} (loading the model; GET /ready)  "
               f"POST /predict  GET /health /ready /metrics /openapi.json", err=True)
    server.run(sockets=[sock])
    if state.load_error is not None:
        exc = state.load_error
        if isinstance(exc, TaskbertError):
            raise exc
        click.echo(f"error: model failed to load: {type(exc).__name__}: {exc}", err=True)
        sys.exit(1)
