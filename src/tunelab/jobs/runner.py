"""The job runner: trains one claimed job in a child process (jobs/child.py) and turns what it
reports into the job's events, checkpoints and result.

Training runs in a child process so a cancel is a SIGTERM (the recipe stops at the next step
with a checkpoint), and the child dies with its worker (jobs/child.py), so a worker that is
killed never leaves a trainer running on a job another worker takes over. A job's run
directory is TUNELAB_HOME/jobs/runs/<job id>; a worker that takes a job over resumes that run
from its newest complete checkpoint, or starts it again when there is none.
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from tunelab.jobs import spec
from tunelab.jobs.store import Job, JobStore

POLL_S = 0.5


@dataclass
class Outcome:
    """How a run ended: ``succeeded`` (with the job's result fields), ``failed`` (with its
    error) or ``stopped`` (cancelled, the worker shutting down, or the job lost)."""

    status: str
    fields: dict = field(default_factory=dict)


def runs_dir(store: JobStore) -> Path:
    return Path(store.path).parent / "runs"


def files_dir(store: JobStore) -> Path:
    return Path(store.path).parent / "files"


def train_job(job: Job, handle) -> Outcome:
    """Run ``job`` to its end; ``handle`` (worker.Handle) records events and checkpoints and
    says when to stop."""
    store = handle.store
    train = store.get_file(None, job.request["training_file"])
    val = store.get_file(None, job.request["validation_file"]) if job.request.get("validation_file") else None
    if train is None or (job.request.get("validation_file") and val is None):
        return _failed("file_deleted", "a file of this job was deleted before it ran")
    run_dir = runs_dir(store) / job.id
    resume = _resumable(run_dir)
    if resume is None and run_dir.exists():
        shutil.rmtree(run_dir)  # an attempt killed before its first checkpoint: start again
    cfg = spec.run_config(job, train["path"], val["path"] if val else None, run_dir)
    config_file = run_dir.parent / f"{job.id}.config.json"
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text(cfg.model_dump_json(), encoding="utf-8")
    handle.event(f"Resuming from {resume} (the previous attempt stopped)" if resume else "Fine-tuning job started")
    child, pipe = _spawn(config_file, run_dir, resume is not None, run_dir.parent / f"{job.id}.log")
    ended = _watch(child, pipe, job, handle, run_dir)
    if ended.get("stopped"):
        return Outcome("stopped")
    if child.exitcode != 0 or "summary" not in ended:
        return _failed("training_failed", ended.get("error") or f"training exited with code {child.exitcode}")
    return Outcome("succeeded", _results(job, store, run_dir, ended))


def _failed(code: str, message: str) -> Outcome:
    return Outcome("failed", {"error": {"code": code, "message": message, "param": None}})


def _resumable(run_dir: Path) -> str | None:
    """The name of the run's newest complete checkpoint, or None."""
    from tunelab.errors import RunError
    from tunelab.rundir import RunDir

    if not (run_dir / "config.yaml").is_file():
        return None
    try:
        return RunDir(run_dir).resume_checkpoint().name
    except RunError:
        return None


def _context():
    """The forkserver context, its server preloading the training stack (started once per
    worker process, on its first job)."""
    global _CONTEXT
    if _CONTEXT is None:
        from tunelab.jobs.child import PRELOAD

        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(PRELOAD)
    return _CONTEXT


_CONTEXT = None


def _spawn(config_file: Path, run_dir: Path, resume: bool, log: Path):
    """The child process training the job, and the end of the pipe it reports on."""
    from tunelab.jobs.child import run_child
    from tunelab.models.load import tunelab_home

    ctx = _context()
    receive, send = ctx.Pipe(duplex=False)
    env = {"TUNELAB_HOME": str(tunelab_home())}  # the forkserver keeps the environment it started with
    child = ctx.Process(target=run_child, name="tunelab-job", daemon=False,
                        args=(str(config_file), str(run_dir), resume, send, str(log), os.getpid(), env))
    child.start()
    send.close()  # only the child writes: its exit ends the pipe
    return child, receive


def _watch(child, pipe, job: Job, handle, run_dir: Path) -> dict:
    """Turn the run's metrics into events and its checkpoints into rows until the child exits;
    SIGTERM it once the handle says stop. What the run ended with: ``summary`` and
    ``trained_tokens``, or ``error``; ``stopped``."""
    ended: dict = {}
    seen: set[int] = set()
    tail = _MetricsTail(run_dir, handle)
    reading = True  # until the pipe ends (the child has exited)
    while child.is_alive() or reading:
        if reading:
            # a dead child with nothing left to read has ended too, whoever else holds the pipe
            reading = _receive(pipe, tail, handle, ended) and (child.is_alive() or pipe.poll(0))
        else:
            child.join(POLL_S)
        tail.forward()
        _new_checkpoints(job, handle, run_dir, seen)
        if not ended.get("stopped") and handle.should_stop():
            child.terminate()  # SIGTERM: the recipe saves a checkpoint and stops at the next step
            ended["stopped"] = True
    child.join()
    tail.forward()
    _new_checkpoints(job, handle, run_dir, seen)
    return ended


def _receive(pipe, tail: "_MetricsTail", handle, ended: dict) -> bool:
    """Wait a moment for the child's next message and take it in; False once the pipe has ended."""
    if not pipe.poll(POLL_S):
        return True
    try:
        message = pipe.recv()
    except EOFError:
        return False
    if message.get("event") == "start":
        tail.total = message["total_steps"]
        handle.event(f"Training from step {message['step']} of {message['total_steps']}")
    else:
        ended.update(message)
    return True


class _MetricsTail:
    """New rows of the run's metrics.jsonl as ``metrics`` events (each with its own step)."""

    def __init__(self, run_dir: Path, handle) -> None:
        self.run_dir, self.handle = run_dir, handle
        self.sent = {(r.get("step"), "eval_loss" in r) for r in _metrics(run_dir)}  # before a resume: already told
        self.total: int | None = None

    def forward(self) -> None:
        for row in _metrics(self.run_dir):
            key = (row.get("step"), "eval_loss" in row)
            if key in self.sent or not ("loss" in row or "eval_loss" in row):
                continue
            self.sent.add(key)
            step, total = row["step"], self._total()
            of = f"/{total}" if total else ""
            if "eval_loss" in row:
                self.handle.event(f"Step {step}{of}: validation loss={row['eval_loss']:.4f}", type="metrics",
                                  data={"step": step, "total_steps": total, "valid_loss": row["eval_loss"]})
            else:
                self.handle.event(f"Step {step}{of}: training loss={row['loss']:.4f}", type="metrics",
                                  data={"step": step, "total_steps": total, "train_loss": row["loss"],
                                        "learning_rate": row.get("learning_rate")})

    def _total(self) -> int | None:
        return self.total


def _new_checkpoints(job: Job, handle, run_dir: Path, seen: set[int]) -> None:
    from tunelab.rundir import checkpoint_problem, checkpoint_step

    folder = run_dir / "checkpoints"
    for path in sorted(folder.glob("checkpoint-*")) if folder.is_dir() else []:
        step = checkpoint_step(path)
        if step < 0 or step in seen or checkpoint_problem(path) is not None:
            continue
        seen.add(step)
        metrics = _metrics_at(run_dir, step)
        if handle.checkpoint(step, f"{spec.model_name(job)}:ckpt-step-{step}", metrics):
            handle.event(f"Checkpoint created at step {step}")


def _metrics_at(run_dir: Path, step: int) -> dict:
    rows = [r for r in _metrics(run_dir) if r.get("step") == step]
    found = {"step": step}
    for row in rows:
        if "loss" in row:
            found["train_loss"] = row["loss"]
        if "eval_loss" in row:
            found["valid_loss"] = row["eval_loss"]
    return found


def _metrics(run_dir: Path) -> list[dict]:
    from tunelab.io import read_jsonl

    path = run_dir / "metrics.jsonl"
    return read_jsonl(path) if path.is_file() else []


def _results(job: Job, store: JobStore, run_dir: Path, ended: dict) -> dict:
    """The succeeded job's fields: its model name, trained tokens and the metrics CSV file."""
    rows: dict[int, dict] = {}
    for row in _metrics(run_dir):
        if "loss" in row or "eval_loss" in row:
            entry = rows.setdefault(row["step"], {"step": row["step"]})
            entry.update({k: row[k] for k in ("loss", "eval_loss", "learning_rate") if k in row})
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["step", "train_loss", "valid_loss", "learning_rate"])
    for step in sorted(rows):
        r = rows[step]
        writer.writerow([step, r.get("loss", ""), r.get("eval_loss", ""), r.get("learning_rate", "")])
    file_id = _store_result(store, job, text.getvalue())
    return {"fine_tuned_model": spec.model_name(job), "trained_tokens": ended.get("trained_tokens"),
            "result_files": [file_id]}


def _store_result(store: JobStore, job: Job, text: str) -> str:
    import time

    from tunelab.io import atomic_write_text
    from tunelab.jobs.store import new_id

    file_id = new_id("file")
    path = files_dir(store) / f"{file_id}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    store.add_file({"id": file_id, "tenant": job.tenant, "filename": "step_metrics.csv",
                    "purpose": "fine-tune-results", "bytes": len(text.encode()), "created_at": int(time.time()),
                    "path": str(path), "format": None, "rows": None, "error": None})
    return file_id


def adapter_path(store: JobStore, job: Job) -> Path:
    return runs_dir(store) / job.id / "adapter"

