"""Workers: processes that validate new jobs, claim queued ones and run them (``tunelab worker``),
and the supervisor ``tunelab serve --workers N`` uses to keep N of them running.

A worker holds a job through a lease it renews every few seconds from a heartbeat thread. When
the lease cannot be renewed (another worker took the job over after this one stalled) or the
job was cancelled, the runner is told to stop. On SIGTERM a worker stops its run at the next
step (the run saves a checkpoint) and gives the job back to the queue, where the next worker
resumes it; a worker that dies without that (SIGKILL, power) leaves a lease that expires, and
the job is taken over the same way, at most ``max_attempts`` times.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from typing import Callable

from tunelab.jobs import spec
from tunelab.jobs.runner import Outcome, train_job
from tunelab.jobs.store import Job, JobStore

DEFAULT_LEASE_S = 60.0
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_POLL_S = 1.0

Runner = Callable[[Job, "Handle"], Outcome]


def validate_job(store: JobStore, job: Job) -> None:
    """validating_files -> queued, or failed naming the first bad line of the file."""
    method = spec.resolved(job.request)["type"]
    problem = None
    for param in ("training_file", "validation_file"):
        if job.request.get(param):
            problem = problem or spec.file_problem(store.get_file(job.tenant, job.request[param]), method, param)
    error = {"code": "invalid_file", "message": problem, "param": _param(problem)} if problem else None
    if store.set_validated(job.id, error):
        if error:
            store.add_event(job.id, f"Validation failed: {problem}", level="error")
        else:
            store.add_event(job.id, "Files validated, moving job to queued state")


def _param(problem: str) -> str:
    return "validation_file" if problem.startswith("validation_file") else "training_file"


def validate_pending(store: JobStore) -> None:
    for job in store.jobs_in("validating_files"):
        validate_job(store, job)


class Handle:
    """What a runner uses while it runs a job: events, checkpoints, and whether to stop."""

    def __init__(self, store: JobStore, job: Job, shutdown: threading.Event) -> None:
        self.store, self.job, self.shutdown = store, job, shutdown
        self.cancelled = self.lost = False

    def should_stop(self) -> bool:
        return self.cancelled or self.lost or self.shutdown.is_set()

    def event(self, message: str, level: str = "info", type: str = "message", data: dict | None = None) -> None:
        self.store.add_event(self.job.id, message, level, type, data)

    def checkpoint(self, step: int, name: str, metrics: dict) -> bool:
        return self.store.add_checkpoint(self.job.id, step, name, metrics)


class Worker:
    def __init__(self, store: JobStore, runner: Runner = train_job, *, worker_id: str | None = None,
                 lease_s: float = DEFAULT_LEASE_S, poll_s: float = DEFAULT_POLL_S,
                 max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> None:
        self.store, self.runner = store, runner
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.lease_s, self.poll_s, self.max_attempts = lease_s, poll_s, max_attempts
        self.shutdown = threading.Event()

    def run(self, until_idle: bool = False) -> int:
        """Claim and run jobs until shut down (or, with ``until_idle``, until none is left);
        the number of jobs run."""
        done = 0
        while not self.shutdown.is_set():
            if self.run_one():
                done += 1
            elif until_idle:
                break
            else:
                self.shutdown.wait(self.poll_s)
        return done

    def run_one(self) -> bool:
        """Validate new jobs, then claim one and run it; False when there was none."""
        validate_pending(self.store)
        job = self.store.claim(self.id, self.lease_s, self.max_attempts)
        if job is None:
            return False
        handle = Handle(self.store, job, self.shutdown)
        beat = threading.Event()
        heartbeat = threading.Thread(target=self._heartbeat, args=(handle, beat), daemon=True)
        heartbeat.start()
        try:
            outcome = self.runner(job, handle)
        except Exception as exc:  # a bug in the runner fails this job, never the worker
            outcome = Outcome("failed", {"error": {"code": "worker_error", "param": None,
                                                   "message": f"{type(exc).__name__}: {exc}"}})
        finally:
            beat.set()
            heartbeat.join()
        self._record(handle, outcome)
        return True

    def _heartbeat(self, handle: Handle, done: threading.Event) -> None:
        every = min(self.lease_s / 3, 2.0)
        while not done.wait(every):
            status = self.store.renew(handle.job.id, self.id, self.lease_s)
            handle.lost = status is None
            handle.cancelled = status == "cancelled"
            if handle.lost:
                return

    def _record(self, handle: Handle, outcome: Outcome) -> None:
        job, store = handle.job, self.store
        closing = {"succeeded": ((f"New fine-tuned model created: {outcome.fields.get('fine_tuned_model')}", "info"),
                                 ("The job has successfully completed", "info")),
                   "failed": ((f"Fine-tuning failed: {outcome.fields.get('error', {}).get('message')}", "error"),)}
        if outcome.status in closing and store.finish(job.id, self.id, outcome.status,
                                                      events=closing[outcome.status], **outcome.fields):
            return
        if outcome.status == "stopped" and store.release(job.id, self.id):
            store.add_event(job.id, "The worker is shutting down; the job is back in the queue and resumes from "
                                    "its last checkpoint", level="warn")
        elif store.get_job(None, job.id).status == "cancelled":
            store.add_event(job.id, "The job was cancelled")


def run_worker(store: JobStore, **options) -> int:
    """``tunelab worker``: run jobs until SIGTERM or Ctrl-C (the job in progress stops at its
    next step and goes back to the queue)."""
    worker = Worker(store, **options)
    previous = {sig: signal.signal(sig, lambda *_: worker.shutdown.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return worker.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _die_with_parent_gently() -> None:  # a worker whose server died stops like on SIGTERM
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


class Supervisor:
    """N ``tunelab worker`` processes beside the server, each restarted if it exits."""

    def __init__(self, count: int, args: list[str], env: dict | None = None, restart_after: float = 2.0) -> None:
        self.count, self.args, self.env, self.restart_after = count, args, env, restart_after
        self.procs: list[subprocess.Popen] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="tunelab-workers", daemon=True)

    def start(self) -> None:
        self.procs = [self._spawn() for _ in range(self.count)]
        self._thread.start()

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "tunelab", "worker", *self.args], env=self.env,
                                stdin=subprocess.DEVNULL,
                                preexec_fn=_die_with_parent_gently if sys.platform == "linux" else None)

    def _watch(self) -> None:
        # spawns from this long-lived thread: a child's death signal follows the thread that forked it
        while not self._stop.wait(self.restart_after):
            for i, proc in enumerate(self.procs):
                if proc.poll() is not None and not self._stop.is_set():
                    self.procs[i] = self._spawn()

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM every worker (each checkpoints and requeues its job), then wait for them."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
