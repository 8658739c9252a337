"""`tunelab serve`, `tunelab feedback export` and `tunelab monitor`."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from tunelab.cli.app import app
from tunelab.cli.render import console
from tunelab.errors import ConfigError
from tunelab.models.catalog import DEFAULT_MODEL

feedback_app = typer.Typer(help="Turn collected feedback into training data.", no_args_is_help=True)
app.add_typer(feedback_app, name="feedback")
DEFAULT_DB = "tunelab-serve.sqlite"


@app.command("serve")
def serve_cmd(
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="base model (catalog name, HF id or folder)"),
    adapters: list[str] = typer.Option(None, "--adapter", help="NAME=RUN_DIR: serve that run as ft:<model>:NAME"),
    runs: Path = typer.Option(None, "--runs", help="also serve every run of this base model under this folder"),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
    api_key: str = typer.Option(None, "--api-key", help="require 'Authorization: Bearer KEY' (or TUNELAB_API_KEY)"),
    db: Path = typer.Option(Path(DEFAULT_DB), "--db", help="SQLite request log and feedback"),
    log_content: bool = typer.Option(False, "--log-content", help="also store prompts and answers in the log"),
    max_batch: int = typer.Option(8, "--max-batch", min=1, help="requests generated together"),
    max_queue: int = typer.Option(64, "--max-queue", min=1, help="queued requests before answering 429"),
    dtype: str = typer.Option("auto", "--dtype", help="auto (bf16 where supported) | float32 | bfloat16"),
) -> None:
    """Serve the base model and its adapters with an OpenAI-compatible API."""
    import uvicorn

    from tunelab.serve.app import create_app
    from tunelab.serve.engine import Engine, find_adapters
    from tunelab.serve.store import Store

    pairs = {}
    for item in adapters or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--adapter {item!r}: expected NAME=RUN_DIR")
        pairs[name] = path
    found = find_adapters(model, pairs, str(runs) if runs else None)
    if dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise ConfigError(f"--dtype {dtype!r}: expected auto, float32, bfloat16 or float16")
    engine = Engine(model, found, max_batch=max_batch, max_queue=max_queue, dtype=dtype)
    key = api_key or os.environ.get("TUNELAB_API_KEY")
    application = create_app(engine, api_key=key, store=Store(db, log_content))
    console.print(f"serving {', '.join(engine.model_names())} on http://{host}:{port}/v1"
                  f"{' (API key required)' if key else ''}; log: {db}")
    uvicorn.run(application, host=host, port=port, log_level="warning")


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
