"""The request log and feedback, in one SQLite file beside the server."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

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


class Store:
    def __init__(self, path: str | Path, log_content: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.log_content = log_content
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False)
        self._db.executescript(SCHEMA)
        self._db.commit()

    def log_request(self, *, id: str, model: str, status: int, prompt_tokens: int, completion_tokens: int,
                    latency_ms: float, ttft_ms: float | None, finish_reason: str | None,
                    prompt: str | None = None, answer: str | None = None) -> None:
        keep = self.log_content
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO requests VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (id, time.time(), model, status, prompt_tokens, completion_tokens, latency_ms, ttft_ms,
                 finish_reason, prompt if keep else None, answer if keep else None))
            self._db.commit()

    def has_request(self, request_id: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM requests WHERE id=?", (request_id,)).fetchone() is not None

    def add_feedback(self, request_id: str, rating: int | None, preferred_output: str | None,
                     comment: str | None) -> None:
        with self._lock:
            self._db.execute("INSERT INTO feedback VALUES (?,?,?,?,?)",
                             (request_id, time.time(), rating, preferred_output, comment))
            self._db.commit()

    def rows(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()
