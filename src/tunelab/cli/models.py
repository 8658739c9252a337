"""`tunelab models`: the built-in catalog."""

from __future__ import annotations

import typer
from rich.table import Table

from tunelab import cost
from tunelab.cli.app import app
from tunelab.cli.render import console, print_json
from tunelab.models import catalog


@app.command("models")
def models_cmd(as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table")) -> None:
    """List the built-in models with their size, context, licence, source and data-size guidance."""
    rows = [{**e.as_dict(), "gpus": cost.gpu_hint(e.params_b)} for e in catalog.CATALOG.values()]
    if as_json:
        print_json(rows)
        return
    table = Table(title="tunelab models (any Hugging Face id or local folder works too)")
    for col in ("name", "params", "context", "licence", "source", "data guidance",
                f"training on {cost.HINT_GPU_MEMORY} GPUs"):
        table.add_column(col, overflow="fold")
    for e in catalog.CATALOG.values():
        name = f"{e.name} [dim](default)[/dim]" if e.name == catalog.DEFAULT_MODEL else e.name
        table.add_row(name, _params(e.params_b), f"{e.context:,}", e.licence, e.source,
                      catalog.guidance(e.params_b)["text"], cost.gpu_hint(e.params_b)["text"])
    console.print(table)


def _params(b: float) -> str:
    return f"{b * 1000:.0f}M" if b < 1 else f"{b:g}B"
