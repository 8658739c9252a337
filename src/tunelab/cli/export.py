"""`tunelab export`: a run's adapter, or one merged model folder."""

from __future__ import annotations

from pathlib import Path

import typer

from tunelab import api
from tunelab.cli.app import app
from tunelab.cli.render import console


@app.command("export")
def export_cmd(
    run_dir: Path = typer.Argument(..., help="run directory written by `tunelab train`"),
    out: Path = typer.Option(..., "--out", help="folder to write"),
    merge: bool = typer.Option(False, "--merge", help="fold the adapter into the base: one plain transformers model"),
    force: bool = typer.Option(False, "--force", help="replace a non-empty --out"),
) -> None:
    """Export a run: the adapter folder (default) or a merged model (lora, dora, qlora, ia3, full)."""
    result = api.export(run_dir, out, merge=merge, force=force)
    console.print(f"wrote {result['kind']} of {result['method']} run to [bold]{result['out']}[/bold]")
    if result["kind"] == "merged model":
        console.print("loads with: AutoModelForCausalLM.from_pretrained(" + repr(result["out"]) + ")")
