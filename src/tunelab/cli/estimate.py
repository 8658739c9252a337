"""`tunelab estimate`: what fine-tuning on a file will cost, by API and self-hosted."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from tunelab import api, cost
from tunelab.cli.app import app
from tunelab.cli.render import console, print_json
from tunelab.config import describe
from tunelab.methods import METHODS
from tunelab.models.catalog import DEFAULT_MODEL


@app.command("estimate")
def estimate_cmd(
    data: Path = typer.Option(..., "--data", help="training JSONL"),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="model to size the self-hosted estimate"),
    method: str = typer.Option("lora", "--method", help=f"one of: {', '.join(METHODS)}"),
    epochs: float = typer.Option(3.0, "--epochs", help="passes over the data"),
    gpu_memory: str = typer.Option(None, "--gpu-memory", help="memory of one GPU (e.g. 80GB, 24GiB): adds how many "
                                   "such GPUs each method needs (DDP: a copy per GPU; FSDP/ZeRO-3: sharded)"),
    chat_template: str = typer.Option(None, "--chat-template", help=describe("data.chat_template")),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Estimate training tokens, the API fine-tuning price and self-hosted FLOPs, time and memory."""
    r = api.estimate(data, model=model, method=method, epochs=epochs, chat_template=chat_template)
    if gpu_memory:
        gpu_bytes = cost.parse_bytes(gpu_memory)
        for name, s in r["self_hosted"].items():
            s["gpus"] = cost.gpus_needed(r["params"], name, gpu_bytes)
    if as_json:
        print_json(r)
        return
    console.print(f"{r['data']}: {r['rows']} rows, {r['tokens_per_epoch']:,} tokens per epoch "
                  f"(prompt + completion, {r['model']} chat template) × {r['epochs']:g} epochs = "
                  f"[bold]{r['training_tokens']:,.0f} training tokens[/bold]")
    api_table = Table(title=f"API fine-tuning (prices as of {r['prices_as_of']}, per 1K tokens)", title_justify="left")
    for col in ("model", "training cost", "input at use", "output at use"):
        api_table.add_column(col, justify="right" if col != "model" else "left")
    for name, p in r["api"].items():
        api_table.add_row(name, f"${p['training_usd']:,.2f}", f"${p['per_1k_input_usd']}", f"${p['per_1k_output_usd']}")
    console.print(api_table)
    table = Table(title=f"self-hosted: {r['model']} ({r['params'] / 1e9:.3g}B parameters)", title_justify="left")
    columns = ["method", "FLOPs", "memory (weights+grads+optimizer)", "time on this CPU", "CPU cost"]
    for col in columns + ([f"GPUs of {gpu_memory}"] if gpu_memory else []):
        table.add_column(col, justify="right" if col != "method" else "left")
    for name, s in r["self_hosted"].items():
        style = "bold" if name == r["method"] else ""
        cells = [name, f"{s['flops']:.3g}", f"{s['memory_gb']:.2f} GB", _hours(s["hours_on_this_cpu"]),
                 f"${s['cpu_cost_usd']:.2f}"] + ([_gpus(s["gpus"])] if gpu_memory else [])
        table.add_row(*cells, style=style)
    console.print(table)


def _gpus(g: dict) -> str:
    return "1 (ddp)" if g["ddp"] else f"{g['fsdp']} (fsdp / zero3)"


def _hours(h: float) -> str:
    return f"{h * 60:.1f} min" if h < 1 else f"{h:.1f} h"
