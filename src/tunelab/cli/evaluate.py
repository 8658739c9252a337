"""`tunelab eval`: base vs tuned on a test set."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from tunelab import api
from tunelab.cli.app import app
from tunelab.cli.render import ProgressView, console, print_json
from tunelab.evaluate.report import METRICS


@app.command("eval")
def eval_cmd(
    run_dir: Path = typer.Argument(..., help="run directory written by `tunelab train`"),
    data: Path = typer.Option(..., "--data", help="test JSONL (same formats as training)"),
    limit: int = typer.Option(None, "--limit", help="evaluate the first N rows only"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of tables"),
) -> None:
    """Compare the base model and the tuned model on the same rows (greedy decoding).

    Writes eval.json and report.md into the run directory.
    """
    with ProgressView() as progress:
        result = api.evaluate(run_dir, data, limit=limit, events=progress)
    if as_json:
        print_json({"n": result["n"], "base": result["base"], "tuned": result["tuned"]})
        return
    render_comparison(result)
    console.print(f"report: {Path(run_dir) / 'report.md'}")


def render_comparison(result: dict) -> None:
    table = Table(title=f"base vs tuned on {result['n']} rows")
    for col in ("metric", "base", "tuned"):
        table.add_column(col, justify="right" if col != "metric" else "left")
    for key, direction in METRICS:
        b, t = result["base"][key], result["tuned"][key]
        good = t < b if direction == "lower" else t > b
        table.add_row(f"{key} ({direction} is better)", f"{b:.4f}", f"[{'green' if good else 'red'}]{t:.4f}")
    console.print(table)
    for i, s in enumerate(result["samples"], 1):
        console.rule(f"sample {i}")
        console.print(f"[bold]prompt[/bold]    {s['prompt']}")
        console.print(f"[bold]reference[/bold] {s['reference']}")
        console.print(f"[bold]base[/bold]      {s['base']}")
        console.print(f"[bold]tuned[/bold]     {s['tuned']}")
