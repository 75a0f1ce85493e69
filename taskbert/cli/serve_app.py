"""The ASGI side of ``taskbert serve``: a Starlette app on uvicorn (the ``serve`` extra).

Starlette because it is the small, well-kept ASGI toolkit FastAPI stands on: routing,
requests and responses and a lifespan, without FastAPI's pydantic layer, which would only
duplicate the checks :func:`.serve.parse_inputs` already makes with the task's own messages.
uvicorn, its usual server, brings the listen backlog, a connection limit, keep-alive and a
graceful shutdown on SIGTERM. Requests wait on the event loop; the model runs on the
:class:`.batching.MicroBatcher`'s one worker thread, so concurrent requests share model calls.
"""

import asyncio
import contextlib
import json
import sys
import threading
import time
import traceback

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Route

from ..errors import TaskbertError
from .batching import MAX_BATCH, MAX_QUEUE, MAX_WAIT_MS, BatchStats, MicroBatcher, QueueFull
from .openapi import openapi_description
from .serve import BATCH_SIZE, JSON_TYPES, MAX_BYTES, MAX_INPUTS, BadRequest, Predictor

BODY_TIMEOUT = 30.0   # seconds a client may take to send a body it announced
RETRY_AFTER = "1"     # seconds, in 503 answers


def json_response(status, obj, headers=None):
    """A JSON answer, UTF-8, as the standard-library server wrote them."""
    body = json.dumps(obj, ensure_ascii=False).encode("utf-8")
    return Response(body, status, headers={"content-type": "application/json; charset=utf-8", **(headers or {})})


def refusal(status, message, close=True, retry=False):
    """A one-line ``{"error": ...}`` answer; ``close`` ends the connection (an unread body must
    not be parsed as the next request), ``retry`` adds ``Retry-After``."""
    headers = {"connection": "close"} if close else {}
    if retry:
        headers["retry-after"] = RETRY_AFTER
    return json_response(status, {"error": message}, headers)


class ServeState:
    """What the app's routes share: limits, batching settings, the predictor once loaded
    (on a background thread, so ``/ready`` can answer 503 meanwhile) and the batcher."""

    def __init__(self, path=None, max_bytes=MAX_BYTES, max_inputs=MAX_INPUTS, batch_size=BATCH_SIZE, task_options=None,
                 max_batch=MAX_BATCH, max_wait_ms=MAX_WAIT_MS, max_queue=MAX_QUEUE, predictor=None, on_load_error=None,
                 quiet=True):
        self.path, self.task_options, self.batch_size = path, task_options, batch_size
        self.max_bytes, self.max_inputs = max_bytes, max_inputs
        self.max_batch, self.max_wait_ms, self.max_queue = max_batch, max_wait_ms, max_queue
        self.on_load_error, self.quiet = on_load_error, quiet
        self.stats = BatchStats()
        self.predictor = self.batcher = self.load_error = None
        self.ready = threading.Event()
        if predictor is not None:
            self._start(predictor)

    def load(self):
        """Load the model (on the caller's thread) and start the batcher; a failure is kept
        in ``load_error`` and passed to ``on_load_error``."""
        try:
            start = time.monotonic()
            predictor = Predictor(self.path, self.batch_size, self.task_options)
            self._start(predictor)
            if not self.quiet:
                print(f"model loaded ({predictor.name}, {predictor.backend}) in "
                      f"{time.monotonic() - start:.1f}s: ready", file=sys.stderr, flush=True)
        except Exception as exc:  # noqa: BLE001 (reported by the command, which exits)
            self.load_error = exc
            if not isinstance(exc, TaskbertError):
                traceback.print_exc(file=sys.stderr)
            if self.on_load_error is not None:
                self.on_load_error(exc)

    def _start(self, predictor):
        self.batcher = MicroBatcher(predictor.predict, self.max_batch, self.max_wait_ms, self.max_queue, self.stats)
        self.predictor = predictor
        self.ready.set()

    def close(self, timeout=1.0):
        """Stop the batcher after the queued requests are answered (at most ``timeout`` s)."""
        if self.batcher is not None:
            self.batcher.stop(timeout)


def build_app(state):
    """The Starlette app over ``state``: POST /predict, GET /health, /ready, /metrics,
    /openapi.json; every answer is JSON."""

    async def health(request):
        p = state.predictor
        return json_response(200, {"status": "ok", "ready": p is not None,
                                   "task": p.name if p else None, "backend": p.backend if p else None,
                                   **({"tasks": list(p.members)} if p and p.members else {}),
                                   "predict": 'POST /predict {"task": NAME, "inputs": [...]}' if p and p.members
                                   else 'POST /predict {"inputs": [...]}',
                                   "max_bytes": state.max_bytes, "max_inputs": state.max_inputs})

    async def ready(request):
        if state.predictor is not None:
            return json_response(200, {"ready": True})
        why = f"model failed to load: {state.load_error}" if state.load_error else "model is loading"
        return refusal(503, why, close=False, retry=state.load_error is None)

    async def metrics(request):
        snap = state.stats.snapshot()
        snap.update(queue=state.batcher.pending() if state.batcher else 0, max_queue=state.max_queue,
                    max_batch=state.max_batch, max_wait_ms=state.max_wait_ms)
        return json_response(200, snap)

    async def openapi(request):
        return json_response(200, openapi_description(state))

    async def predict(request):
        start = time.monotonic()
        try:
            response = await _predict(request)
        except BadRequest as exc:
            response = refusal(exc.status, str(exc), retry=exc.status == 503)
        state.stats.add_request(response.status_code, time.monotonic() - start)
        return response

    async def _predict(request):
        headers = request.headers
        if state.predictor is None:
            raise BadRequest(503, "model is loading; retry shortly (GET /ready)")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raise BadRequest(411, "chunked bodies are not accepted; send Content-Length")
        length = headers.get("content-length")
        if length is None:
            raise BadRequest(411, "Content-Length header required")
        try:   # (uvicorn's parser refuses most bad values first, with its own 400)
            n_bytes = int(length)
        except ValueError:
            raise BadRequest(400, f"Content-Length: {length[:20]!r} is not a number") from None
        if n_bytes > state.max_bytes:
            raise BadRequest(413, f"body: {length} bytes, more than the limit of {state.max_bytes} "
                                  f"(taskbert serve --max-bytes)")
        ctype = headers.get("content-type", "application/json").split(";")[0].strip().lower()
        # curl -d labels a body x-www-form-urlencoded unless told otherwise: read it as JSON too
        if ctype not in JSON_TYPES and not ctype.endswith("+json"):
            raise BadRequest(415, f"Content-Type: {ctype!r}; send application/json")
        try:
            raw = await asyncio.wait_for(request.body(), BODY_TIMEOUT)
        except asyncio.TimeoutError:
            raise BadRequest(408, f"body: not received within {BODY_TIMEOUT:.0f}s") from None
        try:
            payload = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise BadRequest(400, f"body: not UTF-8 (byte {exc.start})") from exc
        except ValueError as exc:
            raise BadRequest(400, f"body: malformed JSON: {exc}") from exc
        examples = state.predictor.examples_from(payload, state.max_inputs)
        try:
            future = state.batcher.submit(examples)
        except QueueFull as exc:
            raise BadRequest(503, f"server busy: {exc}; retry after {RETRY_AFTER}s") from None
        except RuntimeError:   # stopped: the server is shutting down
            raise BadRequest(503, "server is shutting down") from None
        try:
            predictions = await asyncio.wrap_future(future)
        except Exception as exc:  # noqa: BLE001 (a bug must cost its batch's requests, not the server)
            traceback.print_exception(exc, file=sys.stderr)
            return refusal(500, f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                           close=False)
        return json_response(200, {"predictions": predictions})

    async def not_found(request, exc):
        return refusal(404, f"{request.url.path}: not found; use POST /predict or GET /health")

    async def not_allowed(request, exc):
        return refusal(405, f"method {request.method} not allowed on {request.url.path}; "
                            f"use POST /predict or GET /health")

    async def http_error(request, exc):
        return refusal(exc.status_code, str(exc.detail))

    async def bug(request, exc):   # anything unforeseen: still one JSON line (uvicorn logs the traceback)
        return refusal(500, f"internal error: {type(exc).__name__}")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        if state.predictor is None and state.path is not None:
            threading.Thread(target=state.load, name="taskbert-load", daemon=True).start()
        yield
        await asyncio.get_running_loop().run_in_executor(None, state.close)

    routes = [Route("/predict", predict, methods=["POST"]),
              Route("/", health, methods=["GET"]), Route("/health", health, methods=["GET"]),
              Route("/ready", ready, methods=["GET"]), Route("/metrics", metrics, methods=["GET"]),
              Route("/openapi.json", openapi, methods=["GET"])]
    return Starlette(routes=routes, lifespan=lifespan,
                     exception_handlers={404: not_found, 405: not_allowed, HTTPException: http_error,
                                         Exception: bug})


def bind_socket(host, port, backlog):
    """A listening TCP socket on ``host:port`` (0: a free port), bound before uvicorn starts
    so the command can print the real port and a busy port is one line."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say
    # they are TCP; with it on, an answer's body waits ~40 ms for the client's delayed ACK
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def uvicorn_server(state, backlog=2048, max_connections=1024, shutdown_timeout=10.0, quiet=False):
    """A uvicorn Server for ``build_app(state)``: the h11 protocol (pure Python, one behaviour
    everywhere), ``backlog`` pending connections in the kernel (so a burst waits instead of
    being reset), at most ``max_connections`` open at once (beyond that uvicorn answers 503
    itself), and ``shutdown_timeout`` seconds for in-flight requests after SIGTERM."""
    import uvicorn

    config = uvicorn.Config(build_app(state), http="h11", lifespan="on", backlog=backlog,
                            limit_concurrency=max_connections, timeout_graceful_shutdown=shutdown_timeout,
                            log_level="warning" if quiet else "info", access_log=not quiet,
                            server_header=False, date_header=False)
    return uvicorn.Server(config)


class ThreadedServer:
    """A server on a background thread (tests, the benchmark): ``address``, ``wait_ready()``,
    ``stop()``. Signals stay with the main thread's owner."""

    def __init__(self, state, host="127.0.0.1", port=0, **server_options):
        self.state = state
        self.sock = bind_socket(host, port, server_options.get("backlog", 2048))
        self.address = self.sock.getsockname()[:2]
        self.server = uvicorn_server(state, quiet=True, **server_options)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()

    def wait_ready(self, timeout=60.0):
        """Block until the model is loaded and uvicorn listens; raise the load error if any."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.state.load_error is not None:
                raise self.state.load_error
            if self.state.ready.is_set() and self.server.started:
                return self
            time.sleep(0.01)
        raise TimeoutError(f"server not ready within {timeout}s")

    def stop(self, timeout=15.0):
        """Graceful shutdown, as on SIGTERM; join the thread."""
        self.server.should_exit = True
        self.thread.join(timeout)
