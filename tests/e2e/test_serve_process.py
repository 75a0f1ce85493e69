"""taskbert serve as its own process, as it runs in production: SIGTERM answers what is in
flight, stops accepting and exits in the stated time; a bounded load test over loopback (a
few hundred concurrent single-text requests) drops no connection, answers only 200 or 503,
gives `taskbert predict`'s predictions, and keeps the server's memory bounded. The bounds on
time are generous limits the feature promises, never speed measurements."""

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from click.testing import CliRunner

from taskbert.cli import cli

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

TEXTS = [f"{a} the {b} was {c}" for a in ("yes", "well", "so", "and") for b in ("film", "plot", "scene")
         for c in ("great", "awful", "nice", "bad", "superb")]   # 60 distinct texts


class ServeProcess:
    """``taskbert serve RUN --port 0 ...`` in a subprocess; ``address`` from its first line."""

    def __init__(self, run_dir, *options):
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "taskbert", "serve", run_dir, "--port", "0", "--quiet",
                                      *options], stderr=subprocess.PIPE, text=True, env=env)
        self.lines = []
        first = self.proc.stderr.readline()
        self.lines.append(first)
        found = re.search(r"http://([\d.]+):(\d+)", first)
        assert found, f"no address in the first line: {first!r}"
        self.address = (found.group(1), int(found.group(2)))
        self._reader = threading.Thread(target=self._drain, daemon=True)   # a full pipe would block it
        self._reader.start()

    def _drain(self):
        for line in self.proc.stderr:
            self.lines.append(line)

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "".join(self.lines)
            try:
                if request(self.address, "GET", "/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"not ready in {timeout}s: {''.join(self.lines)}")

    def rss_kb(self):
        with open(f"/proc/{self.proc.pid}/status", encoding="ascii") as fh:
            return int(re.search(r"VmRSS:\s+(\d+) kB", fh.read()).group(1))

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def request(address, method, path, body=None, timeout=30):
    """(status, decoded JSON) on a fresh connection."""
    conn = http.client.HTTPConnection(*address, timeout=timeout)
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def predicted(run_dir, texts, tmp_path):
    """``taskbert predict``'s dict for each text."""
    src = tmp_path / "texts.txt"
    src.write_text("\n".join(texts) + "\n")
    result = CliRunner().invoke(cli, ["predict", run_dir, str(src)])
    assert result.exit_code == 0, result.output
    return dict(zip(texts, (json.loads(line) for line in result.stdout.splitlines())))


def test_sigterm_answers_in_flight_requests_and_exits_in_time(trained_run, tmp_path):
    expected = predicted(trained_run, TEXTS[:6], tmp_path)
    # a long max-wait keeps requests in flight (waiting for their batch) when the signal comes
    server = ServeProcess(trained_run, "--max-batch", "64", "--max-wait-ms", "1500", "--shutdown-timeout", "5")
    try:
        server.wait_ready()
        answers = {}

        def send(text):
            answers[text] = request(server.address, "POST", "/predict", {"inputs": [text]})

        senders = [threading.Thread(target=send, args=(t,)) for t in TEXTS[:6]]
        for t in senders:
            t.start()
        time.sleep(0.4)                            # all six sent, none answered yet
        assert not answers
        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.4)
        assert server.proc.poll() is None          # still finishing the requests in flight ...
        with pytest.raises(ConnectionRefusedError):
            request(server.address, "GET", "/health", timeout=5)   # ... but no longer accepting
        server.proc.wait(5 + 3)                    # --shutdown-timeout plus a margin
        took = time.monotonic() - signalled
        for t in senders:
            t.join(10)
        assert {text: a[0] for text, a in answers.items()} == {t: 200 for t in TEXTS[:6]}
        assert {text: a[1]["predictions"][0] for text, a in answers.items()} == expected
        assert server.proc.returncode in (0, -signal.SIGTERM), "".join(server.lines)
        assert took < 5 + 3
    finally:
        server.close()


def test_load_over_loopback(trained_run, tmp_path):
    """600 single-text requests from 200 threads, each on its own connection."""
    expected = predicted(trained_run, TEXTS, tmp_path)
    server = ServeProcess(trained_run, "--max-batch", "32", "--max-wait-ms", "5", "--max-queue", "64")
    try:
        server.wait_ready()
        for text in TEXTS[:8]:                    # warm up before the first memory reading
            assert request(server.address, "POST", "/predict", {"inputs": [text]})[0] == 200
        rss_before = server.rss_kb()
        errors, answers = [], []

        def one(i):
            text = TEXTS[i % len(TEXTS)]
            try:
                status, body = request(server.address, "POST", "/predict", {"inputs": [text]}, timeout=60)
            except (OSError, http.client.HTTPException) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                return
            answers.append((text, status, body))

        with ThreadPoolExecutor(max_workers=200) as pool:
            list(pool.map(one, range(600)))
        rss_after = server.rss_kb()
        assert errors == [], errors[:5]
        assert len(answers) == 600
        statuses = {status for _, status, _ in answers}
        assert statuses <= {200, 503}, statuses
        ok = [(text, body) for text, status, body in answers if status == 200]
        assert len(ok) >= 100                     # most get through; 503s are allowed, not required
        mismatched = [text for text, body in ok if body["predictions"] != [expected[text]]]
        assert mismatched == [], mismatched[:5]
        for _, status, body in answers:
            if status == 503:
                assert body["error"].startswith("server busy")
        assert rss_after < rss_before + 200_000, (rss_before, rss_after)   # kB: a generous bound
        metrics = request(server.address, "GET", "/metrics")[1]
        assert metrics["requests_by_status"].get("200", 0) == len(ok) + 8
        assert metrics["batch_size"]["max"] > 1   # concurrent requests shared model calls
    finally:
        server.close()
