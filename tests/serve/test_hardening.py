"""The HTTP edge on the tiny model: bad requests get OpenAI's 400 and never touch a good one,
auth covers every route, limits hold, blocking work stays off the event loop, clients that
leave free their slot, and the request log can fail without changing an answer."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time

import httpx
import pytest

from tests.serve.conftest import AUTH, KEY, thread_server

OTHER_KEY = "second-key-4567"
LIMITS = dict(max_body_bytes=64 * 1024, max_prompt_chars=2000, read_timeout=2.0, max_concurrent=32)


@pytest.fixture(scope="module")
def edge(base_engine, tmp_path_factory):
    from tunelab.serve.app import create_app
    from tunelab.serve.auth import ApiKeys
    from tunelab.serve.limits import Limits
    from tunelab.serve.store import Store

    limits = Limits(**LIMITS)
    store = Store(tmp_path_factory.mktemp("edge") / "log.sqlite", log_content=True)
    app = create_app(base_engine, keys=ApiKeys({"test": KEY, "other": OTHER_KEY}), store=store, limits=limits)
    with thread_server(app, limits) as url:
        yield {"url": url, "engine": base_engine, "store": store, "model": base_engine.base_name}
    store.close()


def post(edge, path, body=None, *, raw: bytes | None = None, headers=None, timeout=60):
    h = {**AUTH, **(headers or {})}
    if raw is not None:
        return httpx.post(edge["url"] + path, content=raw, headers={**h, "Content-Type": "application/json"},
                          timeout=timeout)
    return httpx.post(edge["url"] + path, json=body, headers=h, timeout=timeout)


def assert_openai_error(r, status: int, param=None):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if param is not None:
        assert err["param"] == param, err
    return err


def slow_forward(monkeypatch, engine, seconds: float):
    """Make every forward pass take a little longer, so a generation lasts long enough to overlap."""
    original = engine.model.forward

    def forward(*args, **kwargs):
        time.sleep(seconds)
        return original(*args, **kwargs)

    monkeypatch.setattr(engine.model, "forward", forward)


def chat(model, **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, **extra}


POISON = [
    ("/v1/chat/completions", {"seed": 2**70}, "seed"),
    ("/v1/chat/completions", {"seed": -(2**70)}, "seed"),
    ("/v1/chat/completions", {"max_tokens": -1}, "max_tokens"),
    ("/v1/chat/completions", {"max_tokens": "ten"}, "max_tokens"),
    ("/v1/chat/completions", {"temperature": -1}, "temperature"),
    ("/v1/chat/completions", {"temperature": 2.5}, "temperature"),
    ("/v1/chat/completions", {"top_p": 2}, "top_p"),
    ("/v1/chat/completions", {"top_p": 0}, "top_p"),
    ("/v1/chat/completions", {"n": 5}, "n"),
    ("/v1/chat/completions", {"messages": []}, "messages"),
    ("/v1/chat/completions", {"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]}, "messages[0].content[0].type"),
    ("/v1/chat/completions", {"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ("/v1/chat/completions", {"tool_choice": "auto"}, "tool_choice"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x" * 2001}]}, "messages"),
    ("/v1/chat/completions", {"max_tokens": 1024}, "max_tokens"),
    ("/v1/completions", {"prompt": ""}, "prompt"),
    ("/v1/completions", {"prompt": ["a", "b"]}, "prompt"),
    ("/v1/completions", {"echo": True}, "echo"),
]


def test_poison_requests_while_a_good_one_decodes(edge, monkeypatch):
    slow_forward(monkeypatch, edge["engine"], 0.01)
    good = {"model": edge["model"], "prompt": "The quick brown fox", "max_tokens": 150, "temperature": 0,
            "stream": True}
    with httpx.stream("POST", edge["url"] + "/v1/completions", json=good, headers=AUTH, timeout=120) as stream:
        assert stream.status_code == 200
        lines = stream.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))  # it is decoding now
        for path, fields, param in POISON:
            base = chat(edge["model"]) if "chat" in path else {"model": edge["model"], "prompt": "hi", "max_tokens": 4}
            assert_openai_error(post(edge, path, {**base, **fields}), 400, param)
        nan = post(edge, "/v1/chat/completions", raw=json.dumps(chat(edge["model"])).replace(
            '"max_tokens": 4', '"max_tokens": 4, "temperature": NaN').encode())
        assert_openai_error(nan, 400, "temperature")
        rest = [first, *lines]
    chunks = [json.loads(line[6:]) for line in rest if line.startswith("data: ") and line != "data: [DONE]"]
    assert chunks[-1]["choices"][0]["finish_reason"] in ("length", "stop")
    assert rest[-1] == "data: [DONE]" or "data: [DONE]" in rest


def test_a_tiny_temperature_is_greedy(edge):
    body = {"model": edge["model"], "prompt": "Monday Tuesday", "max_tokens": 8}
    greedy = post(edge, "/v1/completions", {**body, "temperature": 0}).json()["choices"][0]["text"]
    tiny = post(edge, "/v1/completions", {**body, "temperature": 5e-324})
    assert tiny.status_code == 200 and tiny.json()["choices"][0]["text"] == greedy


def test_text_parts_and_the_developer_role_are_accepted(edge):
    plain = chat(edge["model"], temperature=0, messages=[{"role": "system", "content": "Be brief."},
                                                         {"role": "user", "content": "Monday\nTuesday"}])
    parts = chat(edge["model"], temperature=0, messages=[
        {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": [{"type": "text", "text": "Monday"}, {"type": "text", "text": "Tuesday"}]}])
    a, b = post(edge, "/v1/chat/completions", plain), post(edge, "/v1/chat/completions", parts)
    assert a.status_code == b.status_code == 200, b.text
    assert a.json()["choices"][0]["message"] == b.json()["choices"][0]["message"]
    assert a.json()["usage"] == b.json()["usage"]


@pytest.mark.parametrize("path", ["/openapi.json", "/docs", "/redoc", "/v1/models", "/metrics", "/no-such-route"])
def test_every_route_but_health_needs_a_key(edge, path):
    err = assert_openai_error(httpx.get(edge["url"] + path), 401)
    assert err["type"] == "authentication_error"
    assert httpx.get(edge["url"] + path, headers={"Authorization": "Bearer " + KEY[:-1]}).status_code == 401
    for key in (KEY, OTHER_KEY):  # each named key opens it
        r = httpx.get(edge["url"] + path, headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == (404 if path == "/no-such-route" else 200)


def test_the_schema_documents_the_bearer_key_and_the_400s(edge):
    schema = httpx.get(edge["url"] + "/openapi.json", headers=AUTH).json()
    assert any(s.get("scheme") == "bearer" for s in schema["components"]["securitySchemes"].values())
    chat_op = schema["paths"]["/v1/chat/completions"]["post"]
    assert "400" in chat_op["responses"] and "422" not in chat_op["responses"]


def test_health_shows_models_only_with_a_key(edge):
    assert httpx.get(edge["url"] + "/health").json() == {"status": "ok"}
    assert httpx.get(edge["url"] + "/health", headers=AUTH).json()["models"] == [edge["model"]]


def test_unknown_model_names_are_counted_as_unknown(edge):
    name = "attacker-chosen-name-7f3a"
    assert_openai_error(post(edge, "/v1/chat/completions", chat(name)), 404, "model")
    metrics = httpx.get(edge["url"] + "/metrics", headers=AUTH).text
    assert name not in metrics and 'model="unknown"' in metrics


def test_body_limit_counts_bytes_received_not_headers(edge):
    declared = post(edge, "/v1/chat/completions", raw=b"x" * (LIMITS["max_body_bytes"] + 1))
    assert_openai_error(declared, 413)

    def chunks():  # no Content-Length: only counting the bytes can stop it
        for _ in range(40):
            yield b" " * 8192

    r = httpx.post(edge["url"] + "/v1/chat/completions", content=chunks(),
                   headers={**AUTH, "Content-Type": "application/json"}, timeout=60)
    assert_openai_error(r, 413)
    assert r.json()["error"]["code"] == "request_too_large"


def test_tokenising_runs_off_the_event_loop(edge, monkeypatch):
    import tunelab.serve.app as app_module

    entered, release = threading.Event(), threading.Event()
    real = app_module._text_ids

    def slow_tokenizer(tokenizer, text):
        entered.set()
        release.wait(30)
        return real(tokenizer, text)

    monkeypatch.setattr(app_module, "_text_ids", slow_tokenizer)
    result = {}
    body = {"model": edge["model"], "prompt": "hello", "max_tokens": 2}
    worker = threading.Thread(target=lambda: result.update(r=post(edge, "/v1/completions", body)))
    worker.start()
    try:
        assert entered.wait(30)
        # the event loop is free while a prompt is being tokenised
        assert httpx.get(edge["url"] + "/health", timeout=10).status_code == 200
    finally:
        release.set()
        worker.join(60)
    assert result["r"].status_code == 200


def test_the_character_cap_applies_before_tokenising(edge, monkeypatch):
    import tunelab.serve.app as app_module

    def never(*_):
        raise AssertionError("tokenised a prompt over the character cap")

    monkeypatch.setattr(app_module, "_text_ids", never)
    body = {"model": edge["model"], "prompt": "y" * (LIMITS["max_prompt_chars"] + 1)}
    err = assert_openai_error(post(edge, "/v1/completions", body), 400, "prompt")
    assert err["code"] == "prompt_too_long"


def _wait_for(condition, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_a_client_that_leaves_frees_its_slot(edge, monkeypatch):
    engine = edge["engine"]
    slow_forward(monkeypatch, engine, 0.05)  # 900 tokens would take 45 s
    body = json.dumps({"model": edge["model"], "prompt": "The quick brown fox", "max_tokens": 900,
                       "temperature": 1.0, "seed": 1}).encode()
    port = int(edge["url"].rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + f"Authorization: Bearer {KEY}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    if not _wait_for(lambda: engine.pending == 1):
        sock.settimeout(5)
        raise AssertionError(f"pending: {engine.pending}; answer: {sock.recv(4096)!r}")
    sock.close()  # a non-streaming client gives up
    assert _wait_for(lambda: engine.pending == 0), f"pending: {engine.pending}"
    count = lambda: edge["store"].rows("SELECT count(*) FROM requests WHERE status = 499")[0][0]  # noqa: E731
    assert _wait_for(lambda: count() == 1), f"logged as cancelled: {count()}"


def _read_response(sock) -> bytes:
    """One whole HTTP response with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    while len(body) < length:
        body += sock.recv(4096)
    return head + b"\r\n\r\n" + body


def test_a_slow_client_is_disconnected_after_the_read_timeout(edge):
    port = int(edge["url"].rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")  # and never the rest
        sock.settimeout(LIMITS["read_timeout"] + 20)
        assert sock.recv(1024) == b""  # closed by the server, not by our own timeout
    with socket.create_connection(("127.0.0.1", port)) as sock:  # a kept-alive connection's next request too
        sock.sendall(f"GET /health HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\r\n".encode())
        sock.settimeout(LIMITS["read_timeout"] + 20)
        assert _read_response(sock).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /health HTTP/1.1\r\nHo")
        assert sock.recv(1024) == b""


def test_the_log_is_in_wal_mode_and_its_failure_never_changes_an_answer(edge, monkeypatch):
    store = edge["store"]
    assert store.rows("PRAGMA journal_mode")[0][0] == "wal"

    def locked(_row):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(store, "_insert_request", locked)
    before = store.dropped
    r = post(edge, "/v1/completions", {"model": edge["model"], "prompt": "hello", "max_tokens": 2})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] >= 1
    assert _wait_for(lambda: store.dropped > before)
