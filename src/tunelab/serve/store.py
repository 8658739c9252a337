"""The request log and feedback, in one SQLite file beside the server.

One thread owns the connection and runs every statement in the order submitted, so the
server's event loop never waits on the disk and a feedback call always sees the log lines of
the requests answered before it. The file is in WAL mode: readers (``tunelab monitor``) never
block the writer. Logging is best effort: a failed or dropped log line is counted and
reported once, and never changes an answer."""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Callable

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY, ts REAL, model TEXT, status INTEGER, prompt_tokens INTEGER,
    completion_tokens INTEGER, latency_ms REAL, ttft_ms REAL, finish_reason TEXT,
    prompt TEXT, answer TEXT
);
CREATE TABLE IF NOT EXISTS feedback (
    request_id TEXT, ts REAL, rating INTEGER, preferred_output TEXT, comment TEXT
);
"""
MAX_WAITING = 10_000  # log lines queued for the disk; beyond this new ones are dropped (and counted)
BUSY_TIMEOUT_MS = 5000

log = logging.getLogger("tunelab.serve.store")


class Store:
    def __init__(self, path: str | Path, log_content: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.log_content = log_content
        self.dropped = 0  # log lines lost (queue full or a failed write)
        self._jobs: queue.Queue = queue.Queue(maxsize=MAX_WAITING)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; a crash loses no committed page
        self._db.executescript(SCHEMA)
        self._db.commit()
        self._thread = threading.Thread(target=self._work, name="tunelab-store", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ any thread
    def submit(self, fn: Callable, *args) -> Future:
        """Run ``fn(*args)`` on the store's thread (it may use ``self._db``); its Future."""
        if not self._thread.is_alive():
            raise RuntimeError(f"the request log {self.path} is closed")
        future: Future = Future()
        self._jobs.put((fn, args, future))
        return future

    def log_request(self, *, id: str, model: str, status: int, prompt_tokens: int, completion_tokens: int,
                    latency_ms: float, ttft_ms: float | None, finish_reason: str | None,
                    prompt: str | None = None, answer: str | None = None) -> None:
        """Queue one log line; never blocks and never raises."""
        keep = self.log_content
        row = (id, time.time(), model, status, prompt_tokens, completion_tokens, latency_ms, ttft_ms,
               finish_reason, prompt if keep else None, answer if keep else None)
        try:
            self._jobs.put_nowait((self._insert_request, (row,), None))
        except queue.Full:
            self._lost("the log's queue is full")

    def rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        return self.submit(lambda: self._db.execute(sql, args).fetchall()).result()

    def has_request(self, request_id: str) -> bool:
        return self.submit(self._has_request, request_id).result()

    def close(self) -> None:
        """Write what is queued, then stop."""
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join()
        self._db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ the store's thread
    def _work(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            fn, args, future = item
            try:
                result = fn(*args)
            except Exception as exc:
                self._rollback()
                if future is None:
                    self._lost(f"{type(exc).__name__}: {exc}")
                else:
                    future.set_exception(exc)
                continue
            if future is not None:
                future.set_result(result)

    def _insert_request(self, row: tuple) -> None:
        self._db.execute("INSERT OR REPLACE INTO requests VALUES (?,?,?,?,?,?,?,?,?,?,?)", row)
        self._db.commit()

    def _has_request(self, request_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM requests WHERE id=?", (request_id,)).fetchone() is not None

    def add_feedback_if_logged(self, request_id: str, rating: int | None, preferred_output: str | None,
                               comment: str | None) -> bool:
        """Store feedback for a logged request (store's thread only); False if there is none."""
        if not self._has_request(request_id):
            return False
        self._db.execute("INSERT INTO feedback VALUES (?,?,?,?,?)",
                         (request_id, time.time(), rating, preferred_output, comment))
        self._db.commit()
        return True

    def _rollback(self) -> None:
        try:
            self._db.rollback()
        except sqlite3.Error:
            pass

    def _lost(self, why: str) -> None:
        self.dropped += 1
        if self.dropped == 1 or self.dropped % 1000 == 0:
            log.warning("request log: %d line(s) not written to %s (%s)", self.dropped, self.path, why)
