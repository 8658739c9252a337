"""The process that trains one job, started by the runner through a multiprocessing
forkserver that has imported the training stack once (a fresh interpreter would spend most of
a short job importing torch, transformers and TRL).

``run_child`` runs the stage's recipe and sends the runner its outcome over a pipe:
``{"event": "result", ...}`` or ``{"event": "error", "message": ...}``. Its output goes to the
job's log file. SIGTERM stops the run at the next step with a checkpoint
(train/guards.StopOnSignal), exit 143. It kills itself when its worker dies, so a worker that
is killed never leaves a trainer running on a job another worker takes over.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

# what the forkserver imports once, so each job's process starts with it loaded
PRELOAD = ["torch", "transformers", "peft", "trl", "datasets", "tunelab.train.stages"]
WATCH_S = 1.0


def run_child(config_file: str, run_path: str, resume: bool, conn, log: str, worker_pid: int, env: dict) -> None:
    """The child's whole life: log file, watchdog, training, the outcome on ``conn``, exit."""
    os.environ.update(env)
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    threading.Thread(target=_die_with, args=(worker_pid,), daemon=True).start()
    from tunelab.errors import TunelabError

    code = 0
    try:
        summary = _train(config_file, Path(run_path), resume, lambda event: _send_start(conn, event))
        conn.send({"event": "result", "summary": summary, "trained_tokens": _trained_tokens(Path(run_path), summary)})
    except TunelabError as exc:  # Interrupted (a signal), bad data, out of memory: one line, its exit code
        conn.send({"event": "error", "message": str(exc)})
        code = int(getattr(exc, "exit_code", 1))
    except Exception as exc:  # a failure inside a library: still one line for the job's error
        conn.send({"event": "error", "message": f"{type(exc).__name__}: {exc}"})
        code = 1
    conn.close()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # no interpreter teardown: nothing of the forkserver's state is ours to clean


def _send_start(conn, event: dict) -> None:
    """The run's start (its total steps) to the runner; the other progress it reads from the
    run's metrics.jsonl, which outlives this process."""
    if event.get("event") == "start":
        conn.send({"event": "start", "total_steps": event["total_steps"], "step": event["step"]})


def _die_with(worker_pid: int) -> None:
    while True:
        time.sleep(WATCH_S)
        try:
            os.kill(worker_pid, 0)
        except ProcessLookupError:
            os.kill(os.getpid(), signal.SIGKILL)


def _train(config_file: str, run_path: Path, resume: bool, events) -> dict:
    from tunelab.config import validate
    from tunelab.rundir import RunDir, open_run
    from tunelab.train import stages

    if resume:
        run = open_run(run_path)
        return stages.run(run.config(), run, events, resume=True).summary
    cfg = validate(json.loads(Path(config_file).read_text(encoding="utf-8")), config_file)
    return stages.run(cfg, RunDir(run_path), events).summary


def _trained_tokens(run_path: Path, summary: dict) -> int | None:
    """Tokens the run trained on: the recipe's own count where it keeps one (SFT), else the
    saved training pairs' tokens (both answers) times the passes the steps made over them."""
    if summary.get("real_tokens") is not None:
        return int(summary["real_tokens"])
    from tunelab.data.dataset import load_pairs
    from tunelab.models.load import load_tokenizer, resolve
    from tunelab.rundir import open_run

    run = open_run(run_path)
    cfg = run.config()
    pairs = load_pairs(run.data / "train.jsonl")
    if not pairs:
        return None
    tokenizer = load_tokenizer(resolve(cfg.model.name))
    per_pass = sum(len(tokenizer(tokenizer.apply_chat_template(p["prompt"] + [{"role": "assistant", "content": a}],
                                                               tokenize=False))["input_ids"])
                   for p in pairs for a in (p["chosen"], p["rejected"]))
    rows_seen = int(summary.get("steps") or 0) * cfg.train.batch_size * cfg.train.grad_accum
    return int(per_pass * rows_seen / len(pairs))

