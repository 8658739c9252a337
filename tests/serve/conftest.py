"""Servers for the serving tests: in a thread (to reach into the engine) or as a real
`tunelab serve` process (for signals, memory and raw connections). Both bind 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

KEY = "test-key-0123"
AUTH = {"Authorization": f"Bearer {KEY}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def thread_server(app, limits=None):
    """uvicorn with the production settings (launch.uvicorn_config) in a thread; its base URL."""
    import uvicorn

    from tunelab.serve.launch import uvicorn_config
    from tunelab.serve.limits import Limits

    port = free_port()
    server = uvicorn.Server(uvicorn_config(app, "127.0.0.1", port, limits or Limits()))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(400):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "the test server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


class Process:
    def __init__(self, proc: subprocess.Popen, port: int) -> None:
        self.proc, self.port = proc, port
        self.url = f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def process_server(model: str, tmp: Path, *flags: str, env: dict | None = None):
    """`tunelab serve` as a child process, ready to answer; stopped at the end whatever happened."""
    port = free_port()
    cmd = [sys.executable, "-m", "tunelab", "serve", "--model", model, "--port", str(port),
           "--db", str(tmp / "log.sqlite"), "--dtype", "float32", *flags]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "TUNELAB_API_KEY": KEY, **(env or {})})
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"tunelab serve exited {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise AssertionError("tunelab serve did not start within 180 s")
        yield Process(proc, port)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()


@pytest.fixture(scope="module")
def base_engine(tiny_model):
    """An engine on the tiny base model (no adapters), batch of 4."""
    from tunelab.serve.engine import Engine

    engine = Engine(tiny_model, {}, max_batch=4, max_queue=16, dtype="float32")
    yield engine
    engine.close()
