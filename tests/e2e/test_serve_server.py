"""taskbert serve as a server: the missing extra, /ready while loading, /metrics, /openapi.json,
503 + Retry-After on a full queue, a failing model call as a one-line 500."""

import http.client
import json
import os
import socket
import sys
import threading
import time

import pytest
from click.testing import CliRunner

from taskbert.cli import cli

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

from taskbert.cli.serve import Predictor, start_server  # noqa: E402
from taskbert.cli.serve_app import ServeState, ThreadedServer  # noqa: E402


def call(address, method, path, body=None):
    """(status, headers dict, decoded JSON) of one request."""
    conn = http.client.HTTPConnection(*address, timeout=30)
    conn.request(method, path, body=None if body is None else json.dumps(body),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(data)


def test_without_the_extra_serve_says_how_to_install(trained_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "uvicorn", None)   # import uvicorn now raises ImportError
    result = CliRunner().invoke(cli, ["serve", trained_run, "--port", "0"])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        "error: taskbert serve needs the serve extra (uvicorn is not installed): pip install 'taskbert[serve]'"]


def test_connections_send_without_nagle(trained_run):
    """TCP_NODELAY on every accepted connection: with Nagle on, each answer's last segment
    waited ~40 ms for the client's delayed ACK (a socket made with proto 0 lost it)."""
    srv = start_server(trained_run)
    try:
        conn = http.client.HTTPConnection(*srv.address, timeout=30)
        conn.request("GET", "/health")
        assert conn.getresponse().read()
        sockets = [c.transport.get_extra_info("socket") for c in srv.server.server_state.connections]
        assert sockets and all(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in sockets)
        conn.close()
    finally:
        srv.stop()


def test_metrics_and_openapi(trained_run):
    srv = start_server(trained_run, max_inputs=8, max_batch=16, max_wait_ms=1)
    try:
        status, _, body = call(srv.address, "GET", "/ready")
        assert status == 200 and body == {"ready": True}
        for texts in (["great film"], ["awful", "nice", "bad"], ["superb"]):
            assert call(srv.address, "POST", "/predict", {"inputs": texts})[0] == 200
        assert call(srv.address, "POST", "/predict", {"inputs": 5})[0] == 400
        status, _, m = call(srv.address, "GET", "/metrics")
        assert status == 200
        assert m["requests"] == 4 and m["requests_by_status"] == {"200": 3, "400": 1}
        # three model calls (sequential requests) holding 1 + 3 + 1 inputs
        assert m["batches"] == 3 and m["batch_size"]["histogram"] == {"1": 2, "3": 1}
        assert m["batch_size"]["mean"] == pytest.approx(5 / 3, abs=1e-3)
        assert 0 < m["latency_ms"]["p50"] <= m["latency_ms"]["p99"] and m["latency_ms"]["samples"] == 4
        assert m["max_batch"] == 16 and m["queue"] == 0
        status, _, api = call(srv.address, "GET", "/openapi.json")
        assert status == 200 and api["openapi"].startswith("3.")
        assert set(api["paths"]) == {"/predict", "/health", "/ready", "/metrics", "/openapi.json"}
        assert {"200", "400", "413", "503"} <= set(api["paths"]["/predict"]["post"]["responses"])
        assert api["components"]["schemas"]["PredictRequest"]["properties"]["inputs"]["maxItems"] == 8
    finally:
        srv.stop()


class SlowLoad(ServeState):
    """A state whose model load waits for ``go``: the window in which /ready must say 503."""

    go = threading.Event()

    def load(self):
        assert self.go.wait(30)
        super().load()


def test_ready_is_503_until_the_model_is_loaded(trained_run):
    srv = ThreadedServer(SlowLoad(trained_run))
    try:
        deadline = time.monotonic() + 30
        while not srv.server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        status, headers, body = call(srv.address, "GET", "/ready")
        assert status == 503 and headers["retry-after"] == "1" and body == {"error": "model is loading"}
        status, headers, body = call(srv.address, "POST", "/predict", {"inputs": ["good"]})
        assert status == 503 and "retry-after" in headers and "loading" in body["error"]
        status, _, body = call(srv.address, "GET", "/health")      # alive while not ready
        assert status == 200 and body["ready"] is False
        SlowLoad.go.set()
        srv.wait_ready()
        assert call(srv.address, "GET", "/ready")[0] == 200
        status, _, body = call(srv.address, "POST", "/predict", {"inputs": ["superb"]})
        assert status == 200 and body["predictions"][0]["label"] == "pos"
    finally:
        SlowLoad.go.set()
        srv.stop()


class Gated:
    """A real predictor whose calls wait for ``gate``; it fails on the text 'explode'."""

    def __init__(self, path):
        self.inner = Predictor(path)
        self.task, self.backend = self.inner.task, self.inner.backend
        self.gate, self.entered = threading.Event(), threading.Event()

    def __getattr__(self, name):   # name, members, examples_from: the real predictor's
        return getattr(self.inner, name)

    def predict(self, examples):
        self.entered.set()
        assert self.gate.wait(30)
        if any(getattr(e, "text", None) == "explode" or "explode" in str(e) for e in examples):
            raise ValueError("boom\nsecond line")
        return self.inner.predict(examples)


def test_a_full_queue_answers_503_with_retry_after(trained_run):
    model = Gated(trained_run)
    srv = ThreadedServer(ServeState(predictor=model, max_batch=1, max_wait_ms=0, max_queue=1)).wait_ready()
    answers = {}

    def send(name):
        answers[name] = call(srv.address, "POST", "/predict", {"inputs": [f"{name} nice"]})

    try:
        first = threading.Thread(target=send, args=("first",))
        first.start()
        assert model.entered.wait(30)           # the worker holds it, inside the model
        second = threading.Thread(target=send, args=("second",))
        second.start()
        deadline = time.monotonic() + 30
        while srv.state.batcher.pending() < 1 and time.monotonic() < deadline:
            time.sleep(0.01)                    # the queue's one place is taken
        status, headers, body = call(srv.address, "POST", "/predict", {"inputs": ["third nice"]})
        assert status == 503 and headers["retry-after"] == "1"
        assert body["error"] == "server busy: the queue is full (1 requests waiting); retry after 1s"
        model.gate.set()
        first.join(30)
        second.join(30)
        assert answers["first"][0] == 200 and answers["second"][0] == 200
        assert call(srv.address, "GET", "/metrics")[2]["requests_by_status"] == {"200": 2, "503": 1}
    finally:
        model.gate.set()
        srv.stop()


def test_a_failing_model_call_is_a_one_line_500_and_the_server_goes_on(trained_run, capsys):
    model = Gated(trained_run)
    model.gate.set()
    srv = ThreadedServer(ServeState(predictor=model, max_wait_ms=0)).wait_ready()
    try:
        status, _, body = call(srv.address, "POST", "/predict", {"inputs": ["explode"]})
        assert status == 500 and body == {"error": "internal error: ValueError: boom"}
        status, _, body = call(srv.address, "POST", "/predict", {"inputs": ["great"]})
        assert status == 200 and body["predictions"][0]["label"] == "pos"
    finally:
        srv.stop()
    assert "ValueError: boom" in capsys.readouterr().err   # the traceback goes to the log


def test_a_model_that_fails_to_load_stops_the_server_with_one_line(trained_run, tmp_path):
    """The folder passes the up-front check (taskbert.json is there) but its weights are
    gone: the load, after the port opened, fails; the server stops with one line, not a hang."""
    import shutil

    from taskbert.cli.runs import find_model_folder

    broken = tmp_path / "broken"
    shutil.copytree(find_model_folder(trained_run), broken)
    for name in os.listdir(broken):
        if name.endswith(".safetensors"):
            os.remove(broken / name)
    result = CliRunner().invoke(cli, ["serve", str(broken), "--port", "0", "--quiet"])
    assert result.exit_code in (1, 2), result.output
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(f"serving {broken} on http://127.0.0.1:")
    assert lines[-1].startswith("error: ") and "\n" not in lines[-1]


def test_an_unforeseen_error_is_still_a_json_500(trained_run, monkeypatch):
    from taskbert.cli import serve as serve_module

    def broken(*args):
        raise RuntimeError("a bug")

    srv = start_server(trained_run)
    try:
        monkeypatch.setattr(serve_module, "parse_inputs", broken)   # called by Predictor.examples_from
        status, _, body = call(srv.address, "POST", "/predict", {"inputs": ["good"]})
        assert status == 500 and body == {"error": "internal error: RuntimeError"}
        monkeypatch.undo()
        assert call(srv.address, "POST", "/predict", {"inputs": ["good"]})[0] == 200
    finally:
        srv.stop()


def test_a_busy_port_is_one_line_before_any_weights_load(trained_run):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["serve", trained_run, "--port", str(port)])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        f"error: --host/--port: cannot listen on 127.0.0.1:{port}: Address already in use"]
