"""``taskbert serve RUN_DIR``: a small HTTP JSON prediction endpoint (standard library).

* ``POST /predict`` with ``{"inputs": ["a text", {"text": "a record"}, ...]}`` answers
  ``{"predictions": [...]}``, one per input, the same dicts ``taskbert predict`` writes.
  A string goes through the task's ``record_from_text``; an object is a record as in a
  jsonl file.
* ``GET /health`` answers ``{"status": "ok", "task": ..., "backend": ...}``.

Bad requests get a 4xx status and ``{"error": "one line"}``, never a crash: a missing or
oversized body (411/413, ``--max-bytes``), too many inputs (413, ``--max-inputs``), a body
that is not UTF-8 JSON or has the wrong shape, or an input the task rejects (400), a
content type other than JSON (415; text/plain and curl's default form type are read as JSON), an unknown
path (404) or method (405). Requests are answered on threads; predictions run one batch
at a time under a lock (one model, shared). RUN_DIR may also be an ONNX export folder
(``taskbert export``), served with ONNX Runtime.
"""

import json
import socket
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import click

from ..errors import DataError
from .main import cli, friendly

MAX_BYTES = 1_000_000
MAX_INPUTS = 64
LINGER_BYTES = 16_000_000  # most bytes read and dropped after refusing a request
JSON_TYPES = ("application/json", "text/plain", "application/x-www-form-urlencoded")


class BadRequest(Exception):
    """A request the client must fix: HTTP ``status`` and a one-line message."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class Predictor:
    """A run folder (torch) or an ONNX export folder behind one ``predict(examples)``."""

    def __init__(self, path, batch_size=64, task_options=None):
        from .export import OnnxModel, is_export_folder

        self.batch_size = batch_size
        if is_export_folder(path):
            self.backend = "onnxruntime"
            self._onnx = OnnxModel(path, task_options=task_options)
            self.task = self._onnx.task
        else:
            from .runs import load_run

            self.backend = "torch"
            self._loaded = load_run(path, task_options)
            self.task = self._loaded.task

    def predict(self, examples):
        """One prediction dict per example."""
        if self.backend == "onnxruntime":
            return self._onnx.predict(examples, self.batch_size)
        from .runs import predict_examples

        return predict_examples(self._loaded, examples, self.batch_size)


def parse_inputs(payload, task, max_inputs):
    """Examples from a request body's JSON; BadRequest naming the bad part."""
    if not isinstance(payload, dict) or "inputs" not in payload:
        raise BadRequest(400, 'body: expected a JSON object {"inputs": [text or record, ...]}')
    extra = sorted(set(payload) - {"inputs"})
    if extra:
        raise BadRequest(400, f"body: unknown key {extra[0]!r}; allowed: inputs")
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


class Handler(BaseHTTPRequestHandler):
    """Routes ``/predict`` and ``/health``; every answer is JSON."""

    server_version = "taskbert"
    timeout = 30  # a client that stalls mid-request frees its thread

    def _send(self, status, obj):
        body = json.dumps(obj, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status, message):
        self._send(status, {"error": message})

    def do_GET(self):  # noqa: N802 (http.server's naming)
        """Health and a short description of the endpoint."""
        if self.path.split("?")[0] in ("/", "/health"):
            s = self.server
            self._send(200, {"status": "ok", "task": s.predictor.task.name, "backend": s.predictor.backend,
                             "predict": 'POST /predict {"inputs": [...]}',
                             "max_bytes": s.max_bytes, "max_inputs": s.max_inputs})
        else:
            self._error(404, f"{self.path}: not found; use POST /predict or GET /health")

    def do_POST(self):  # noqa: N802
        """Validate the request, predict, answer."""
        if self.path.split("?")[0] != "/predict":
            self._refuse(404, f"{self.path}: not found; use POST /predict")
            return
        try:
            examples = self._read_examples()
        except BadRequest as exc:
            self._refuse(exc.status, str(exc))
            return
        try:
            with self.server.lock:
                predictions = self.server.predictor.predict(examples)
        except Exception as exc:  # a bug must cost one request, not the server
            traceback.print_exc(file=sys.stderr)
            self._error(500, f"internal error: {type(exc).__name__}: {exc}")
            return
        self._send(200, {"predictions": predictions})

    def _read_examples(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            raise BadRequest(411, "chunked bodies are not accepted; send Content-Length")
        length = self.headers.get("Content-Length")
        if length is None:
            raise BadRequest(411, "Content-Length header required")
        try:
            length = int(length)
        except ValueError:
            raise BadRequest(400, f"Content-Length: {length[:20]!r} is not a number") from None
        if length < 0:
            raise BadRequest(400, f"Content-Length: {length} is negative")
        if length > self.server.max_bytes:
            raise BadRequest(413, f"body: {length} bytes, more than the limit of {self.server.max_bytes} "
                                  f"(taskbert serve --max-bytes)")
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip().lower()
        # curl -d labels a body x-www-form-urlencoded unless told otherwise: read it as JSON too
        if ctype not in JSON_TYPES and not ctype.endswith("+json"):
            raise BadRequest(415, f"Content-Type: {ctype!r}; send application/json")
        raw = self.rfile.read(length)
        try:
            payload = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise BadRequest(400, f"body: not UTF-8 (byte {exc.start})") from exc
        except ValueError as exc:
            raise BadRequest(400, f"body: malformed JSON: {exc}") from exc
        return parse_inputs(payload, self.server.predictor.task, self.server.max_inputs)

    def _refuse(self, status, message):
        self.close_connection = True  # an unread body must not be parsed as a request
        self._error(status, message)
        self._linger()

    def _linger(self):
        """Stop writing, then read and drop what the client still sends (bounded in bytes
        and time): closing with unread bytes makes the kernel send a reset, which can
        destroy the error answer before the client reads it."""
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(1.0)
            left = LINGER_BYTES
            while left > 0 and (chunk := self.connection.recv(65536)):
                left -= len(chunk)
        except OSError:
            pass

    def _not_allowed(self):
        self._refuse(405, f"method {self.command} not allowed; use POST /predict or GET /health")

    do_PUT = do_DELETE = do_PATCH = _not_allowed

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        """One access-log line on stderr, unless ``--quiet``."""
        if not self.server.quiet:
            sys.stderr.write(f"{self.address_string()} {format % args}\n")


class PredictionServer(ThreadingHTTPServer):
    """The HTTP server with the predictor and limits its handlers read."""

    daemon_threads = True

    def __init__(self, address, predictor, max_bytes=MAX_BYTES, max_inputs=MAX_INPUTS, quiet=False):
        self.predictor, self.max_bytes, self.max_inputs, self.quiet = predictor, max_bytes, max_inputs, quiet
        self.lock = threading.Lock()
        super().__init__(address, Handler)


def make_server(path, host="127.0.0.1", port=8000, max_bytes=MAX_BYTES, max_inputs=MAX_INPUTS,
                batch_size=64, quiet=False, task_options=None):
    """Load the model at ``path`` and bind the server (port 0 picks a free port);
    ``task_options`` as ``predict --task-option`` takes them."""
    return PredictionServer((host, port), Predictor(path, batch_size, task_options), max_bytes, max_inputs, quiet)


@cli.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--max-bytes", default=1_000_000, show_default=True, type=click.IntRange(min=1),
              help="largest request body accepted")
@click.option("--max-inputs", default=64, show_default=True, type=click.IntRange(min=1),
              help="most inputs in one request")
@click.option("--task-option", "task_opts", multiple=True, metavar="KEY=VALUE",
              help="change a task option that does not shape the model, as for taskbert predict")
@click.option("--quiet", is_flag=True, help="no access log")
@friendly
def serve(run_dir, host, port, max_bytes, max_inputs, task_opts, quiet):
    """Serve predictions over HTTP: POST /predict {"inputs": [...]}, GET /health."""
    from .runs import task_option_overrides

    server = make_server(run_dir, host, port, max_bytes, max_inputs, quiet=quiet,
                         task_options=task_option_overrides(task_opts))
    bound_host, bound_port = server.server_address[:2]
    click.echo(f"serving {run_dir} ({server.predictor.task.name}, {server.predictor.backend}) on "
               f"http://{bound_host}:{bound_port}  POST /predict  GET /health", err=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
