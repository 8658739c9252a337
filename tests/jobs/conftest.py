"""Servers, stores and workers for the fine-tuning jobs tests; every server binds 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import MEMO_ROWS, write_jsonl
from tests.serve.conftest import thread_server

ALICE, BOB = "alice-key-0123", "bob-key-0123"
FINISHED = ("succeeded", "failed", "cancelled")
PAIRS = [{"prompt": f"Code word {i}?", "chosen": word, "rejected": "no idea"}
         for i, word in enumerate(["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"])]


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="package")
def jobs_engine(tiny_model):
    from tunelab.serve.engine import Engine

    engine = Engine(tiny_model, {}, max_batch=4, max_queue=16, dtype="float32")
    yield engine
    engine.close()


@contextlib.contextmanager
def jobs_server(engine, store, max_upload_bytes: int = 1 << 20):
    """The whole app (chat, models, files, jobs) with two named keys: alice and bob."""
    from tunelab.jobs.routes import JobsApi
    from tunelab.serve.app import create_app
    from tunelab.serve.auth import ApiKeys
    from tunelab.serve.limits import Limits

    limits = Limits(max_upload_bytes=max_upload_bytes)
    app = create_app(engine, keys=ApiKeys({"alice": ALICE, "bob": BOB}), limits=limits,
                     jobs=JobsApi(store, base=engine.base_name, max_upload_bytes=max_upload_bytes))
    with thread_server(app, limits) as url:
        yield url


@pytest.fixture
def store(tmp_path):
    from tunelab.jobs.store import SqliteJobStore

    s = SqliteJobStore(tmp_path / "jobs" / "jobs.sqlite")
    yield s
    s.close()


@contextlib.contextmanager
def worker_thread(store_path: Path, runner=None, **options):
    """A Worker on its own connection to the store, in a thread, stopped at the end."""
    from tunelab.jobs.store import SqliteJobStore
    from tunelab.jobs.worker import Worker

    store = SqliteJobStore(store_path)
    worker = Worker(store, runner, **{"poll_s": 0.1, **options}) if runner else Worker(store, **{"poll_s": 0.1, **options})
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.shutdown.set()
        thread.join(timeout=120)
        store.close()


def upload(url: str, key: str, path: Path, purpose: str = "fine-tune") -> dict:
    with path.open("rb") as handle:
        r = httpx.post(f"{url}/v1/files", headers=auth(key), files={"file": (path.name, handle)},
                       data={"purpose": purpose}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def create_job(url: str, key: str, model: str, file_id: str, **extra) -> dict:
    r = httpx.post(f"{url}/v1/fine_tuning/jobs", headers=auth(key), timeout=60,
                   json={"model": model, "training_file": file_id, **extra})
    assert r.status_code == 200, r.text
    return r.json()


def wait_for(fetch, done, what: str, limit_s: float = 300.0):
    """Poll ``fetch()`` until ``done(value)``; fails (naming ``what``) after ``limit_s`` — a
    bound on a hang, not a speed check."""
    deadline = time.monotonic() + limit_s
    while True:
        value = fetch()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"gave up waiting for {what}: last {json.dumps(value, default=str)[:500]}"
        time.sleep(0.2)


def memo_file(folder: Path) -> Path:
    return write_jsonl(folder / "memo.jsonl", MEMO_ROWS)


def pairs_file(folder: Path) -> Path:
    return write_jsonl(folder / "pairs.jsonl", PAIRS)
