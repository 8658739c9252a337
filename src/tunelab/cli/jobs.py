"""`tunelab jobs ...` (a client of a server's fine-tuning API, over HTTP) and `tunelab worker`."""

from __future__ import annotations

import os
import time
from pathlib import Path

import typer

from tunelab.cli.app import app
from tunelab.cli.render import console, print_json
from tunelab.errors import ConfigError, TunelabError

jobs_app = typer.Typer(help="Fine-tuning jobs on a tunelab server (OpenAI's fine-tuning API).", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
URL_ENV, KEY_ENV = "TUNELAB_URL", "TUNELAB_API_KEY"
DEFAULT_URL = "http://127.0.0.1:8000"
URL_HELP = f"the server (default: ${URL_ENV}, else {DEFAULT_URL}); the key is read from ${KEY_ENV}"
FINISHED = ("succeeded", "failed", "cancelled")


class ServerError(TunelabError):
    """The server refused the request (exit 2) or could not be reached (exit 1)."""


def _line(text: str) -> None:
    """One line as it is: ids and model names are never wrapped or styled."""
    console.print(text, soft_wrap=True, markup=False, highlight=False)


def _call(url: str | None, method: str, path: str, **kwargs) -> dict:
    """One API call; the server's error message (and its param) as a one-line error."""
    import httpx

    base = (url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
    key = os.environ.get(KEY_ENV)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        response = httpx.request(method, f"{base}/v1{path}", headers=headers, timeout=60, **kwargs)
    except httpx.HTTPError as exc:
        error = ServerError(f"{base}: cannot reach the server ({type(exc).__name__}: {exc})")
        error.exit_code = 1
        raise error from None
    if response.status_code >= 400:
        try:
            detail = response.json()["error"]
            message = detail["message"] + (f" (param: {detail['param']})" if detail.get("param") else "")
        except (ValueError, KeyError, TypeError):
            message = response.text[:200]
        error = ServerError(f"{response.status_code}: {message}")
        error.exit_code = 2 if response.status_code < 500 else 1
        raise error
    return response.json()


def _hyperparameters(epochs: int | None, batch_size: int | None, lr_multiplier: float | None,
                     beta: float | None) -> dict:
    given = {"n_epochs": epochs, "batch_size": batch_size, "learning_rate_multiplier": lr_multiplier, "beta": beta}
    return {k: v for k, v in given.items() if v is not None}


def _upload(url: str | None, path: Path) -> str:
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    with path.open("rb") as handle:
        return _call(url, "POST", "/files", files={"file": (path.name, handle)}, data={"purpose": "fine-tune"})["id"]


@jobs_app.command("submit")
def submit_cmd(
    file: Path = typer.Argument(..., help="training JSONL (uploaded first)"),
    model: str = typer.Option(..., "--model", "-m", help="base model, as the server names it"),
    method: str = typer.Option("supervised", "--method", help="supervised | dpo"),
    validation: Path = typer.Option(None, "--validation", help="validation JSONL (uploaded too)"),
    epochs: int = typer.Option(None, "--epochs", min=1, help="n_epochs (default: auto)"),
    batch_size: int = typer.Option(None, "--batch-size", min=1, help="batch_size (default: auto)"),
    lr_multiplier: float = typer.Option(None, "--lr-multiplier", help="learning_rate_multiplier (default: auto)"),
    beta: float = typer.Option(None, "--beta", help="dpo only: beta (default: auto)"),
    suffix: str = typer.Option(None, "--suffix", help="part of the fine-tuned model's name"),
    seed: int = typer.Option(None, "--seed"),
    wait: bool = typer.Option(False, "--wait", help="poll until the job finishes"),
    url: str = typer.Option(None, "--url", help=URL_HELP),
) -> None:
    """Upload FILE and start a fine-tuning job on it."""
    if method not in ("supervised", "dpo"):
        raise ConfigError(f"--method {method!r}: expected supervised or dpo")
    body = {"model": model, "training_file": _upload(url, file),
            "method": {"type": method, method: {"hyperparameters": _hyperparameters(epochs, batch_size,
                                                                                      lr_multiplier, beta)}}}
    if validation is not None:
        body["validation_file"] = _upload(url, validation)
    body.update({k: v for k, v in {"suffix": suffix, "seed": seed}.items() if v is not None})
    job = _call(url, "POST", "/fine_tuning/jobs", json=body)
    _line(f"{job['id']}: {job['status']} (training file {job['training_file']})")
    if wait:
        _wait(url, job["id"])


def _wait(url: str | None, job_id: str) -> None:
    job = _call(url, "GET", f"/fine_tuning/jobs/{job_id}")
    while job["status"] not in FINISHED:
        time.sleep(2)
        job = _call(url, "GET", f"/fine_tuning/jobs/{job_id}")
    _show(job)
    if job["status"] != "succeeded":
        raise ServerError(f"{job_id} {job['status']}" + (f": {job['error']['message']}" if job.get("error") else ""))


def _show(job: dict) -> None:
    _line(f"{job['id']}  {job['status']}  model {job['model']}")
    for key in ("fine_tuned_model", "trained_tokens", "result_files"):
        if job.get(key):
            _line(f"  {key}: {job[key]}")
    if job.get("error"):
        _line(f"  error: {job['error']['message']}")


@jobs_app.command("list")
def list_cmd(limit: int = typer.Option(20, "--limit", min=1, max=100), after: str = typer.Option(None, "--after"),
             as_json: bool = typer.Option(False, "--json"), url: str = typer.Option(None, "--url", help=URL_HELP)) -> None:
    """Your jobs, newest first."""
    page = _call(url, "GET", "/fine_tuning/jobs", params={"limit": limit, **({"after": after} if after else {})})
    if as_json:
        print_json(page)
        return
    for job in page["data"]:
        _line(f"{job['id']}  {job['status']:<16} {job['method']['type']:<10} {job['fine_tuned_model'] or '-'}")
    if page["has_more"]:
        _line(f"(more: --after {page['last_id']})")


@jobs_app.command("show")
def show_cmd(job_id: str, as_json: bool = typer.Option(False, "--json"),
             url: str = typer.Option(None, "--url", help=URL_HELP)) -> None:
    """One job: status, model, tokens, result files, error."""
    job = _call(url, "GET", f"/fine_tuning/jobs/{job_id}")
    if as_json:
        print_json(job)
    else:
        _show(job)


@jobs_app.command("events")
def events_cmd(job_id: str, limit: int = typer.Option(20, "--limit", min=1, max=1000),
               url: str = typer.Option(None, "--url", help=URL_HELP)) -> None:
    """A job's latest events, oldest of them first."""
    page = _call(url, "GET", f"/fine_tuning/jobs/{job_id}/events", params={"limit": limit})
    for event in reversed(page["data"]):
        stamp = time.strftime("%H:%M:%S", time.localtime(event["created_at"]))
        _line(f"{stamp}  {event['level']:<5} {event['message']}")


@jobs_app.command("cancel")
def cancel_cmd(job_id: str, url: str = typer.Option(None, "--url", help=URL_HELP)) -> None:
    """Cancel a job that has not finished (a running one stops at its next step)."""
    job = _call(url, "POST", f"/fine_tuning/jobs/{job_id}/cancel")
    _line(f"{job['id']}: {job['status']}")


@app.command("worker")
def worker_cmd(
    db: Path = typer.Option(None, "--db", help="the job store (default TUNELAB_HOME/jobs/jobs.sqlite)"),
    lease: float = typer.Option(60.0, "--lease", min=1.0, help="seconds a job stays claimed without a heartbeat"),
    poll: float = typer.Option(1.0, "--poll", min=0.05, help="seconds between looks at the queue when idle"),
    max_attempts: int = typer.Option(3, "--max-attempts", min=1, help="claims of one job before it fails"),
) -> None:
    """Run fine-tuning jobs from the job store until SIGTERM or Ctrl-C (the job in progress
    saves a checkpoint and goes back to the queue)."""
    from tunelab.jobs.store import open_store
    from tunelab.jobs.worker import run_worker

    store = open_store(db)
    _line(f"worker on {store.path}")
    done = run_worker(store, lease_s=lease, poll_s=poll, max_attempts=max_attempts)
    _line(f"worker stopped after {done} job{'s' if done != 1 else ''}")
