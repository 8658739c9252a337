"""`tunelab serve` as a real process on 127.0.0.1: an oversized chunked body is refused with
the server's memory bounded, the schema needs the key, and SIGTERM ends in-flight work and
exits 0 within the shutdown timeout. Also the key file and the exposure warning."""

from __future__ import annotations

import json
import select
import signal
import socket

import httpx
import psutil
import pytest

from tests.helpers import run_cli
from tests.serve.conftest import AUTH, KEY, process_server

BODY_LIMIT = 64 * 1024
SHUTDOWN = 3.0


@pytest.fixture(scope="module")
def proc(tiny_model, tmp_path_factory):
    with process_server(tiny_model, tmp_path_factory.mktemp("proc"), "--max-body-bytes", str(BODY_LIMIT),
                        "--read-timeout", "5", "--shutdown-timeout", str(SHUTDOWN)) as p:
        yield p


def _send_chunked(port: int, total: int, rss) -> tuple[bytes, int]:
    """POST ``total`` bytes with chunked encoding, watching for an early answer; returns the
    answer and the server's peak RSS seen meanwhile."""
    peak = rss()
    chunk = b" " * 65536
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    answer = b""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     + f"Authorization: Bearer {KEY}\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        for sent in range(0, total, len(chunk)):
            if select.select([sock], [], [], 0)[0]:
                break  # the server answered before the body ended
            try:
                sock.sendall(frame)
            except (BrokenPipeError, ConnectionResetError):
                break
            if sent % (4 << 20) == 0:
                peak = max(peak, rss())
        sock.settimeout(30)
        try:
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except (ConnectionResetError, socket.timeout):
            pass
    return answer, max(peak, rss())


def test_a_chunked_body_over_the_limit_gets_413_with_memory_bounded(proc):
    server = psutil.Process(proc.proc.pid)
    before = server.memory_info().rss
    answer, peak = _send_chunked(proc.port, 40 << 20, lambda: server.memory_info().rss)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), answer[:300]
    assert json.loads(body)["error"]["code"] == "request_too_large"
    assert peak - before < 32 << 20  # a 40 MiB body was never held
    assert httpx.get(proc.url + "/health").status_code == 200


def test_the_schema_needs_the_key(proc):
    assert httpx.get(proc.url + "/openapi.json").status_code == 401
    assert httpx.get(proc.url + "/docs").status_code == 401
    schema = httpx.get(proc.url + "/openapi.json", headers=AUTH)
    assert schema.status_code == 200 and "/v1/chat/completions" in schema.json()["paths"]


def test_sigterm_ends_in_flight_work_and_exits_0(proc):
    body = {"model": httpx.get(proc.url + "/health", headers=AUTH).json()["models"][0], "prompt": "The quick",
            "max_tokens": 900, "temperature": 1.0, "seed": 3, "stream": True}
    with httpx.stream("POST", proc.url + "/v1/completions", json=body, headers=AUTH, timeout=60) as stream:
        assert stream.status_code == 200, stream.read()
        lines = stream.iter_lines()
        assert next(line for line in lines if line.startswith("data: "))  # generating
        proc.proc.send_signal(signal.SIGTERM)
        try:
            for _ in lines:  # the stream ends (finished, or cut at the shutdown timeout)
                pass
        except httpx.HTTPError:
            pass
    assert proc.proc.wait(timeout=SHUTDOWN + 30) == 0
    stderr = proc.proc.stderr.read().decode()
    assert "Traceback" not in stderr, stderr[-2000:]
    with pytest.raises(httpx.HTTPError):
        httpx.get(proc.url + "/health", timeout=2)  # no longer accepting


def test_keys_file_lines_are_checked_with_file_and_line(capsys, tmp_path, tiny_model):
    keys = tmp_path / "keys.txt"
    keys.write_text("# team keys\nalice:alice-key-123\n\nbob no-colon-here\n")
    code, _, err = run_cli(capsys, "serve", "--model", tiny_model, "--api-keys-file", keys)
    assert code == 2 and f"{keys}:4: expected 'name:key'" in err


def test_named_keys_load_and_short_keys_are_refused(tmp_path):
    from tunelab.errors import ConfigError
    from tunelab.serve.auth import ApiKeys

    keys = tmp_path / "keys.txt"
    keys.write_text("alice:alice-key-123\nbob : bob-key-4567\n")
    loaded = ApiKeys.load("env-key-000111", keys)
    assert loaded.names() == ["alice", "bob", "default"]
    assert loaded.match("Bearer bob-key-4567") == "bob" and loaded.match("bearer env-key-000111") == "default"
    assert loaded.match("Bearer bob-key-456") is None and loaded.match("Basic bob-key-4567") is None
    keys.write_text("carol:short\n")
    with pytest.raises(ConfigError, match=r"keys.txt:1: an API key needs at least 8 characters"):
        ApiKeys.load(None, keys)


@pytest.mark.parametrize("host, keyed, warned", [("127.0.0.1", False, False), ("localhost", False, False),
                                                 ("::1", False, False), ("0.0.0.0", False, True),
                                                 ("192.168.1.4", False, True), ("0.0.0.0", True, False)])
def test_binding_beyond_loopback_without_a_key_warns(host, keyed, warned):
    from tunelab.serve.launch import exposure_warning

    text = exposure_warning(host, keyed)
    assert (text is not None) == warned
    if warned:
        assert host in text and "TUNELAB_API_KEY" in text
