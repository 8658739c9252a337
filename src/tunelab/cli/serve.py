"""`tunelab serve`, `tunelab feedback export` and `tunelab monitor`."""

from __future__ import annotations

from pathlib import Path

import typer

from tunelab.cli.app import app
from tunelab.cli.render import DEVICE_MAP_HELP, checked_device_map
from tunelab.cli.render import console
from tunelab.errors import ConfigError
from tunelab.models.catalog import DEFAULT_MODEL
from tunelab.serve.limits import Limits

feedback_app = typer.Typer(help="Turn collected feedback into training data.", no_args_is_help=True)
app.add_typer(feedback_app, name="feedback")
DEFAULT_DB = "tunelab-serve.sqlite"
LIMITS = Limits()


@app.command("serve")
def serve_cmd(
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="base model (catalog name, HF id or folder)"),
    adapters: list[str] = typer.Option(None, "--adapter", help="NAME=RUN_DIR: serve that run as ft:<model>:NAME"),
    runs: Path = typer.Option(None, "--runs", help="also serve every run of this base model under this folder"),
    runs_dir: Path = typer.Option(None, "--runs-dir", help="the runs the dashboard at /ui lists "
                                  "(default: the --runs folder, else ./runs)"),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
    api_key: str = typer.Option(None, "--api-key", help="require 'Authorization: Bearer KEY'; prefer the "
                                "TUNELAB_API_KEY environment variable (argv is visible to other users)"),
    api_keys_file: Path = typer.Option(None, "--api-keys-file", help="named keys, one 'name:key' per line"),
    db: Path = typer.Option(Path(DEFAULT_DB), "--db", help="SQLite request log and feedback"),
    log_content: bool = typer.Option(False, "--log-content", help="also store prompts and answers in the log"),
    dtype: str = typer.Option("auto", "--dtype", help="auto (bf16 where supported) | float32 | bfloat16"),
    rag: list[str] = typer.Option(None, "--rag", help="NAME=INDEX[:RUN]: a model name that retrieves from INDEX "
                                                       "(tunelab rag index) before the base, or RUN, answers"),
    device_map: str = typer.Option(None, "--device-map", help=DEVICE_MAP_HELP),
    max_batch: int = typer.Option(LIMITS.max_batch, "--max-batch", min=1, help="requests generated together"),
    max_queue: int = typer.Option(LIMITS.max_queue, "--max-queue", min=1,
                                  help="requests waiting or generating before answering 429"),
    max_concurrent: int = typer.Option(LIMITS.max_concurrent, "--max-concurrent", min=1,
                                       help="HTTP requests handled at once before answering 429"),
    max_body_bytes: int = typer.Option(LIMITS.max_body_bytes, "--max-body-bytes", min=1,
                                       help="request body limit, counted on the bytes received (413)"),
    max_prompt_chars: int = typer.Option(LIMITS.max_prompt_chars, "--max-prompt-chars", min=1,
                                         help="prompt or message characters, checked before tokenising (400)"),
    read_timeout: float = typer.Option(LIMITS.read_timeout, "--read-timeout", min=0.1,
                                       help="seconds a client has to send a whole request"),
    keep_alive: float = typer.Option(LIMITS.keep_alive, "--keep-alive", min=0.1,
                                     help="seconds an idle keep-alive connection stays open"),
    shutdown_timeout: float = typer.Option(LIMITS.shutdown_timeout, "--shutdown-timeout", min=0.1,
                                           help="on SIGTERM, seconds in-flight requests get before cancelling"),
    max_connections: int = typer.Option(LIMITS.max_connections, "--max-connections", min=1,
                                        help="open connections; beyond them the server answers 503"),
    max_upload_bytes: int = typer.Option(LIMITS.max_upload_bytes, "--max-upload-bytes", min=1,
                                         help="one file uploaded to /v1/files, counted while it streams (413)"),
    workers: int = typer.Option(0, "--workers", min=0, help="fine-tuning job workers to run beside the server "
                                "(0: jobs wait for a separate `tunelab worker`)"),
    jobs_db: Path = typer.Option(None, "--jobs-db", help="the fine-tuning job store (default "
                                 "TUNELAB_HOME/jobs/jobs.sqlite)"),
) -> None:
    """Serve the base model and its adapters with an OpenAI-compatible API."""
    from tunelab import api
    from tunelab.errors import require_extra

    require_extra("serve", "tunelab serve", "fastapi", "uvicorn", "prometheus_client", "multipart")

    pairs = _pairs(adapters, "--adapter", "NAME=RUN_DIR")
    limits = Limits(max_body_bytes=max_body_bytes, max_prompt_chars=max_prompt_chars, max_concurrent=max_concurrent,
                    max_queue=max_queue, max_batch=max_batch, read_timeout=read_timeout, keep_alive=keep_alive,
                    shutdown_timeout=shutdown_timeout, max_connections=max_connections,
                    max_upload_bytes=max_upload_bytes)
    api.serve(model, adapters=pairs, runs=runs, runs_dir=runs_dir, host=host, port=port, api_key=api_key,
          api_keys_file=api_keys_file, db=db, log_content=log_content, dtype=dtype, device_map=checked_device_map(device_map), limits=limits,
          rag=_pairs(rag, "--rag", "NAME=INDEX[:RUN]"), jobs_db=jobs_db, workers=workers, say=console.print,
          warn=lambda text: console.print(f"[yellow]{text}[/yellow]"))


def _pairs(items: list[str] | None, flag: str, form: str) -> dict[str, str]:
    """NAME=VALUE items of a repeated flag as a dict; a malformed one is a usage error."""
    pairs = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise ConfigError(f"{flag} {item!r}: expected {form}")
        pairs[name] = value
    return pairs


@feedback_app.command("export")
def feedback_export_cmd(
    out: Path = typer.Option(..., "--out", help="preference JSONL to write"),
    db: Path = typer.Option(Path(DEFAULT_DB), "--db", help="the server's SQLite log"),
) -> None:
    """Write {prompt, chosen, rejected} pairs from feedback that names a preferred output.

    Needs a log written with --log-content (the prompts and answers)."""
    from tunelab.serve.feedback import export_preferences

    n, skipped = export_preferences(db, out)
    console.print(f"wrote {n} preference pairs to {out}" + (f"; skipped {skipped} (see above)" if skipped else ""))


@app.command("monitor")
def monitor_cmd(
    db: Path = typer.Option(Path(DEFAULT_DB), "--db", help="the server's SQLite log"),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="the served base model"),
    adapters: list[str] = typer.Option(None, "--adapter", help="NAME=RUN_DIR, as given to serve (for drift)"),
    runs: Path = typer.Option(None, "--runs", help="runs folder, as given to serve (for drift)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Traffic, latency percentiles and drift of prompts against each adapter's training data."""
    from rich.table import Table

    from tunelab.cli.render import print_json
    from tunelab.errors import DataError
    from tunelab.models.load import load_tokenizer, resolve
    from tunelab.serve.engine import find_adapters
    from tunelab.serve.monitor import summarise, training_profile

    if not db.is_file():
        raise DataError(f"{db}: no such request log")
    pairs = dict(item.partition("=")[::2] for item in adapters or [])
    found = find_adapters(model, pairs, str(runs) if runs else None)
    tokenizer = load_tokenizer(resolve(model)) if found else None
    profiles = {name: training_profile(a.path.parent, tokenizer) for name, a in found.items()}
    report = summarise(db, profiles)
    if as_json:
        print_json(report)
        return
    table = Table(title=f"{report['requests']} requests in {db}", title_justify="left")
    for col in ("model", "requests", "status", "latency p50/p95/p99 ms", "TTFT p50/p95 ms", "tokens out",
                "prompt length KS", "unseen words"):
        table.add_column(col)
    for name, e in report["models"].items():
        d = e.get("drift", {})
        table.add_row(name, str(e["requests"]), " ".join(f"{k}:{v}" for k, v in e["by_status"].items()),
                      "/".join(str(v) for v in e["latency_ms"].values()), "/".join(str(v) for v in e["ttft_ms"].values()),
                      str(e["completion_tokens"]), str(d.get("length_ks", "-")),
                      "-" if d.get("unseen_word_share") is None else f"{d['unseen_word_share']:.1%}")
    console.print(table)
