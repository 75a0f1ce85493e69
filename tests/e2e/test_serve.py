"""taskbert serve: JSON predictions over loopback; bad requests get a 4xx, not a crash."""

import http.client
import json
import socket

import pytest
from click.testing import CliRunner

from taskbert.cli import cli

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

from taskbert.cli.serve import start_server  # noqa: E402


@pytest.fixture(scope="module")
def trained(trained_run):
    return trained_run


@pytest.fixture(scope="module")
def server(trained):
    srv = start_server(trained, "127.0.0.1", 0, max_bytes=2000, max_inputs=4)
    yield srv
    srv.stop()
    assert not srv.thread.is_alive()


def call(server, method, path, body=None, headers=None):
    """(status, decoded JSON) of one request over loopback."""
    conn = http.client.HTTPConnection(*server.address, timeout=30)
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    conn.request(method, path, body=body, headers=headers or {"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    assert resp.getheader("Content-Type").startswith("application/json")
    return resp.status, json.loads(data)


def raw(server, data, body_json=True):
    """Send raw bytes (requests http.client will not make): (status code, decoded body)."""
    with socket.create_connection(server.address, timeout=30) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    body = answer.split(b"\r\n\r\n", 1)[1]
    return int(answer.split(b" ", 2)[1]), json.loads(body) if body_json else body.decode()


def test_health(server):
    status, body = call(server, "GET", "/health")
    assert status == 200 and body["status"] == "ok"
    assert body["task"] == "sentence_classification" and body["backend"] == "torch"


def test_predictions_match_taskbert_predict(server, trained, tmp_path):
    texts = ["the movie was great", "an awful plot", "nice film"]
    status, body = call(server, "POST", "/predict", {"inputs": texts[:2] + [{"text": texts[2], "id": 7}]})
    assert status == 200
    src = tmp_path / "in.txt"
    src.write_text("\n".join(texts) + "\n")
    result = CliRunner().invoke(cli, ["predict", trained, str(src)])
    assert result.exit_code == 0, result.output
    assert body["predictions"] == [json.loads(line) for line in result.stdout.splitlines()]
    assert [p["label"] for p in body["predictions"]] == ["pos", "neg", "pos"]


@pytest.mark.parametrize("body, status, message", [
    ("{not json", 400, "body: malformed JSON"),
    (b"\xff\xfe{}", 400, "body: not UTF-8"),
    ([1, 2], 400, 'expected a JSON object {"inputs"'),
    ({"inputs": []}, 400, "inputs: expected a non-empty list"),
    ({"inputs": "a text"}, 400, "inputs: expected a non-empty list"),
    ({"inputs": ["ok", 5]}, 400, "inputs[1]: expected a string or an object, got 5"),
    ({"inputs": [{"body": "x"}]}, 400, "inputs[0]: missing text field 'text'"),
    ({"inputs": [{"text": 3}]}, 400, "inputs[0]: field 'text' must be text, got 3"),
    ({"inputs": ["a"], "extra": 1}, 400, "unknown key 'extra'"),
    ({"inputs": ["a"] * 5}, 413, "inputs: 5 items, more than the limit of 4"),
    ({"inputs": ["good " * 500]}, 413, "more than the limit of 2000"),
])
def test_bad_requests_get_4xx(server, body, status, message):
    got, answer = call(server, "POST", "/predict", body)
    assert got == status and message in answer["error"], answer


def test_protocol_errors(server):
    assert call(server, "GET", "/nope")[0] == 404
    assert call(server, "POST", "/elsewhere", {"inputs": ["a"]})[0] == 404
    assert call(server, "PUT", "/predict", {"inputs": ["a"]})[0] == 405
    status, body = call(server, "POST", "/predict", "--x--", {"Content-Type": "multipart/form-data; boundary=x"})
    assert status == 415 and "application/json" in body["error"]
    # what curl -d sends without -H: a JSON body labelled as a form is read as JSON
    status, body = call(server, "POST", "/predict", '{"inputs": ["great"]}',
                        {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200 and body["predictions"][0]["label"] == "pos"
    assert raw(server, b"POST /predict HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 411
    # a Content-Length that is not a number never reaches the app: uvicorn's parser answers
    # 400 in one line of plain text
    status, body = raw(server, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", False)
    assert status == 400 and body == "Invalid HTTP request received."
    # a huge declared length is refused before any of the body is read
    status, body = raw(server, b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n{")
    assert status == 413 and "999999999 bytes" in body["error"]
    status, _ = raw(server, b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert status == 411


def test_server_survives_and_still_answers(server):
    for _ in range(3):
        call(server, "POST", "/predict", "{broken")
    status, body = call(server, "POST", "/predict", {"inputs": ["superb scene"]})
    assert status == 200 and body["predictions"][0]["label"] == "pos"


def test_serve_refuses_a_folder_that_is_not_a_run(tmp_path):
    result = CliRunner().invoke(cli, ["serve", str(tmp_path), "--port", "0"])
    assert result.exit_code == 2 and "not a taskbert run or model folder" in result.output
