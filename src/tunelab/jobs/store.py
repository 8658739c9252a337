"""The job store: files, fine-tuning jobs, their events and checkpoints.

``JobStore`` is the interface the routes and the workers use; ``SqliteJobStore`` is the
embedded implementation (one file under TUNELAB_HOME, shared by the server and every worker
process on the machine). Another database can be added by implementing ``JobStore``.

Guarantees: every write is one transaction, committed with ``synchronous=FULL`` in WAL mode
(a committed job, file or event survives a crash or a power cut); a job is claimed by one
worker at a time, with a lease the worker renews: ``claim`` takes a queued job, or a running
one whose lease expired, inside one ``BEGIN IMMEDIATE`` transaction, so two workers never
claim the same job; a worker's writes to a job (renew, finish, release) only apply while it
still holds it.
"""

from __future__ import annotations

import abc
import json
import os
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ACTIVE = ("validating_files", "queued", "running")
FINISHED = ("succeeded", "failed", "cancelled")
BUSY_TIMEOUT_S = 30.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, tenant TEXT NOT NULL, filename TEXT,
    purpose TEXT, bytes INTEGER, created_at INTEGER, path TEXT, format TEXT, rows INTEGER, error TEXT,
    deleted INTEGER DEFAULT 0
);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, tenant TEXT NOT NULL, created_at INTEGER,
    request TEXT, status TEXT NOT NULL, fine_tuned_model TEXT, trained_tokens INTEGER, error TEXT,
    result_files TEXT DEFAULT '[]', finished_at INTEGER, worker TEXT, lease_until REAL, attempts INTEGER DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, seq);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, job_id TEXT NOT NULL, created_at INTEGER,
    level TEXT, message TEXT, type TEXT, data TEXT
);
CREATE INDEX IF NOT EXISTS events_job ON events(job_id, seq);
CREATE TABLE IF NOT EXISTS checkpoints (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, job_id TEXT NOT NULL, created_at INTEGER,
    step INTEGER, name TEXT, metrics TEXT, UNIQUE(job_id, step)
);
"""


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def default_path() -> Path:
    from tunelab.models.load import tunelab_home

    return tunelab_home() / "jobs" / "jobs.sqlite"


@dataclass
class Job:
    """A job as stored; ``request`` is the validated creation request (model, files, method...)."""

    id: str
    tenant: str
    created_at: int
    request: dict
    status: str
    fine_tuned_model: str | None = None
    trained_tokens: int | None = None
    error: dict | None = None
    result_files: list | None = None
    finished_at: int | None = None
    worker: str | None = None
    lease_until: float | None = None
    attempts: int = 0


@dataclass
class Page:
    items: list
    has_more: bool


class JobStore(abc.ABC):
    """What the routes and the workers need from a store; see the module docstring for the
    guarantees an implementation must keep."""

    # files
    @abc.abstractmethod
    def add_file(self, row: dict) -> None: ...
    @abc.abstractmethod
    def get_file(self, tenant: str | None, file_id: str) -> dict | None: ...
    @abc.abstractmethod
    def list_files(self, tenant: str, purpose: str | None, after: str | None, limit: int) -> Page: ...
    @abc.abstractmethod
    def delete_file(self, tenant: str, file_id: str) -> bool: ...

    # jobs
    @abc.abstractmethod
    def create_job(self, tenant: str, request: dict) -> Job: ...
    @abc.abstractmethod
    def get_job(self, tenant: str | None, job_id: str) -> Job | None: ...
    @abc.abstractmethod
    def list_jobs(self, tenant: str, after: str | None, limit: int) -> Page: ...
    @abc.abstractmethod
    def jobs_in(self, status: str, tenant: str | None = None) -> list[Job]: ...
    @abc.abstractmethod
    def set_validated(self, job_id: str, error: dict | None) -> bool: ...
    @abc.abstractmethod
    def cancel(self, tenant: str, job_id: str) -> Job | None: ...
    @abc.abstractmethod
    def claim(self, worker: str, lease_s: float, max_attempts: int) -> Job | None: ...
    @abc.abstractmethod
    def renew(self, job_id: str, worker: str, lease_s: float) -> str | None: ...
    @abc.abstractmethod
    def finish(self, job_id: str, worker: str, status: str, events: tuple = (), **fields) -> bool: ...
    @abc.abstractmethod
    def release(self, job_id: str, worker: str) -> bool: ...

    # events and checkpoints
    @abc.abstractmethod
    def add_event(self, job_id: str, message: str, level: str = "info", type: str = "message",
                  data: dict | None = None) -> None: ...
    @abc.abstractmethod
    def events(self, job_id: str, after: str | None, limit: int) -> Page: ...
    @abc.abstractmethod
    def add_checkpoint(self, job_id: str, step: int, name: str, metrics: dict) -> bool: ...
    @abc.abstractmethod
    def checkpoints(self, job_id: str, after: str | None, limit: int) -> Page: ...


class SqliteJobStore(JobStore):
    """The embedded store. One connection per instance, used under a lock (the server calls it
    from several threads); every process opens its own instance on the same file."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=BUSY_TIMEOUT_S,
                                   isolation_level=None)  # transactions are explicit (BEGIN IMMEDIATE)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # job state must survive a power cut, not only a crash
        with self._tx():
            for statement in filter(str.strip, SCHEMA.split(";")):
                self._db.execute(statement)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ plumbing
    def _tx(self):
        return _Transaction(self._db, self._lock)

    def _one(self, sql: str, args: tuple = ()) -> sqlite3.Row | None:
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    def _page(self, table: str, where: str, args: tuple, after: str | None, limit: int) -> Page:
        """Rows of ``table`` matching ``where``, newest first, after the row with id ``after``."""
        cursor = ""
        if after:
            cursor = f" AND seq < COALESCE((SELECT seq FROM {table} WHERE id=?), -1)"
            args = (*args, after)
        with self._lock:
            rows = self._db.execute(f"SELECT * FROM {table} WHERE {where}{cursor} ORDER BY seq DESC LIMIT ?",
                                    (*args, limit + 1)).fetchall()
        return Page([dict(r) for r in rows[:limit]], len(rows) > limit)

    # ------------------------------------------------------------------ files
    def add_file(self, row: dict) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO files (id, tenant, filename, purpose, bytes, created_at, path, format, rows, error)"
                       " VALUES (:id, :tenant, :filename, :purpose, :bytes, :created_at, :path, :format, :rows,"
                       " :error)", row)

    def get_file(self, tenant: str | None, file_id: str) -> dict | None:
        row = self._one("SELECT * FROM files WHERE id=? AND deleted=0", (file_id,))
        return dict(row) if row is not None and tenant in (None, row["tenant"]) else None

    def list_files(self, tenant: str, purpose: str | None, after: str | None, limit: int) -> Page:
        where, args = "tenant=? AND deleted=0", (tenant,)
        if purpose:
            where, args = where + " AND purpose=?", (tenant, purpose)
        return self._page("files", where, args, after, limit)

    def delete_file(self, tenant: str, file_id: str) -> bool:
        with self._tx() as db:
            return db.execute("UPDATE files SET deleted=1 WHERE id=? AND tenant=? AND deleted=0",
                              (file_id, tenant)).rowcount == 1

    # ------------------------------------------------------------------ jobs: the API side
    def create_job(self, tenant: str, request: dict) -> Job:
        job_id = new_id("ftjob")
        with self._tx() as db:
            db.execute("INSERT INTO jobs (id, tenant, created_at, request, status) VALUES (?,?,?,?,?)",
                       (job_id, tenant, int(time.time()), json.dumps(request), "validating_files"))
        return self.get_job(tenant, job_id)

    def get_job(self, tenant: str | None, job_id: str) -> Job | None:
        row = self._one("SELECT * FROM jobs WHERE id=?", (job_id,))
        return _job(dict(row)) if row is not None and tenant in (None, row["tenant"]) else None

    def list_jobs(self, tenant: str, after: str | None, limit: int) -> Page:
        page = self._page("jobs", "tenant=?", (tenant,), after, limit)
        return Page([_job(r) for r in page.items], page.has_more)

    def jobs_in(self, status: str, tenant: str | None = None) -> list[Job]:
        """Every job in ``status`` (of ``tenant``, when given), oldest first."""
        where, args = ("status=?", (status,)) if tenant is None else ("status=? AND tenant=?", (status, tenant))
        with self._lock:
            rows = self._db.execute(f"SELECT * FROM jobs WHERE {where} ORDER BY seq", args).fetchall()
        return [_job(dict(r)) for r in rows]

    def set_validated(self, job_id: str, error: dict | None) -> bool:
        """validating_files -> queued, or -> failed with ``error``; False if the job had left
        validating_files (cancelled, or validated by another process)."""
        status = "failed" if error else "queued"
        with self._tx() as db:
            return db.execute("UPDATE jobs SET status=?, error=?, finished_at=? WHERE id=? AND status='validating_files'",
                              (status, json.dumps(error) if error else None, int(time.time()) if error else None,
                               job_id)).rowcount == 1

    def cancel(self, tenant: str, job_id: str) -> Job | None:
        """Cancel a job that has not finished (its worker stops it at the next step); a finished
        job is left as it is. The job as it now stands, or None if ``tenant`` has no such job."""
        with self._tx() as db:
            db.execute(f"UPDATE jobs SET status='cancelled', finished_at=? WHERE id=? AND tenant=? "
                       f"AND status IN {ACTIVE}", (int(time.time()), job_id, tenant))
        return self.get_job(tenant, job_id)

    # ------------------------------------------------------------------ jobs: the worker side
    def claim(self, worker: str, lease_s: float, max_attempts: int) -> Job | None:
        """The oldest queued job, or running job whose lease expired, now leased to ``worker``
        (one transaction: no other worker can claim it too). A job whose lease expired after
        ``max_attempts`` claims fails instead of being claimed again."""
        now = time.time()
        with self._tx() as db:
            while True:
                row = db.execute("SELECT * FROM jobs WHERE status='queued' OR (status='running' AND lease_until<?) "
                                 "ORDER BY seq LIMIT 1", (now,)).fetchone()
                if row is None:
                    return None
                if row["status"] == "running" and row["attempts"] >= max_attempts:
                    error = {"code": "worker_lost", "param": None,
                             "message": f"the worker running this job stopped {row['attempts']} times without "
                                        "finishing it; not retried again"}
                    db.execute("UPDATE jobs SET status='failed', error=?, finished_at=?, worker=NULL WHERE id=?",
                               (json.dumps(error), int(now), row["id"]))
                    continue
                db.execute("UPDATE jobs SET status='running', worker=?, lease_until=?, attempts=attempts+1 "
                           "WHERE id=?", (worker, now + lease_s, row["id"]))
                return _job({**dict(row), "status": "running", "worker": worker, "lease_until": now + lease_s,
                             "attempts": row["attempts"] + 1})

    def renew(self, job_id: str, worker: str, lease_s: float) -> str | None:
        """Extend ``worker``'s lease; the job's status (``cancelled`` means stop), or None when
        the worker no longer holds it."""
        with self._tx() as db:
            db.execute("UPDATE jobs SET lease_until=? WHERE id=? AND worker=? AND status='running'",
                       (time.time() + lease_s, job_id, worker))
            row = db.execute("SELECT status, worker FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None or row["worker"] != worker:
            return None
        return row["status"]

    def finish(self, job_id: str, worker: str, status: str, events: tuple = (), **fields) -> bool:
        """Record the end of a running job held by ``worker`` (a cancelled job stays cancelled),
        with its closing ``events`` ((message, level) pairs) in the same transaction: whoever sees
        the final status also sees them."""
        values = {"status": status, "finished_at": int(time.time()), **fields}
        for key in ("error", "result_files"):
            if key in values:
                values[key] = json.dumps(values[key])
        sets = ", ".join(f"{k}=:{k}" for k in values)
        with self._tx() as db:
            ended = db.execute(f"UPDATE jobs SET {sets}, lease_until=NULL WHERE id=:job_id AND worker=:worker "
                               "AND status='running'", {**values, "job_id": job_id, "worker": worker}).rowcount == 1
            for message, level in events if ended else ():
                db.execute("INSERT INTO events (id, job_id, created_at, level, message, type, data) "
                           "VALUES (?,?,?,?,?,?,?)", (new_id("ftevent"), job_id, int(time.time()), level, message,
                                                      "message", None))
            return ended

    def release(self, job_id: str, worker: str) -> bool:
        """Give a running job back to the queue (its worker is shutting down); the claim is not
        counted against the retry limit."""
        with self._tx() as db:
            return db.execute("UPDATE jobs SET status='queued', worker=NULL, lease_until=NULL, "
                              "attempts=MAX(attempts-1, 0) WHERE id=? AND worker=? AND status='running'",
                              (job_id, worker)).rowcount == 1

    # ------------------------------------------------------------------ events and checkpoints
    def add_event(self, job_id: str, message: str, level: str = "info", type: str = "message",
                  data: dict | None = None) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO events (id, job_id, created_at, level, message, type, data) VALUES (?,?,?,?,?,?,?)",
                       (new_id("ftevent"), job_id, int(time.time()), level, message, type,
                        json.dumps(data) if data is not None else None))

    def events(self, job_id: str, after: str | None, limit: int) -> Page:
        return self._page("events", "job_id=?", (job_id,), after, limit)

    def add_checkpoint(self, job_id: str, step: int, name: str, metrics: dict) -> bool:
        """A checkpoint row, once per step (a resumed run that saves the same step again adds none)."""
        with self._tx() as db:
            return db.execute("INSERT OR IGNORE INTO checkpoints (id, job_id, created_at, step, name, metrics) "
                              "VALUES (?,?,?,?,?,?)", (new_id("ftckpt"), job_id, int(time.time()), step, name,
                                                       json.dumps(metrics))).rowcount == 1

    def checkpoints(self, job_id: str, after: str | None, limit: int) -> Page:
        return self._page("checkpoints", "job_id=?", (job_id,), after, limit)


class _Transaction:
    """``with``: BEGIN IMMEDIATE (the write lock up front, so a read-then-write cannot be
    raced by another process) ... COMMIT, or ROLLBACK on an exception."""

    def __init__(self, db: sqlite3.Connection, lock: threading.RLock) -> None:
        self.db, self.lock = db, lock

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise
        return self.db

    def __exit__(self, kind, _exc, _tb) -> None:
        try:
            self.db.execute("ROLLBACK" if kind else "COMMIT")
        finally:
            self.lock.release()


def _job(row: dict) -> Job:
    return Job(id=row["id"], tenant=row["tenant"], created_at=row["created_at"], request=json.loads(row["request"]),
               status=row["status"], fine_tuned_model=row["fine_tuned_model"], trained_tokens=row["trained_tokens"],
               error=json.loads(row["error"]) if row["error"] else None,
               result_files=json.loads(row["result_files"] or "[]"), finished_at=row["finished_at"],
               worker=row["worker"], lease_until=row["lease_until"], attempts=row["attempts"])


def open_store(path: str | Path | None = None) -> JobStore:
    """The store at ``path`` (default: TUNELAB_JOBS_DB, else TUNELAB_HOME/jobs/jobs.sqlite)."""
    return SqliteJobStore(path or os.environ.get("TUNELAB_JOBS_DB") or None)
