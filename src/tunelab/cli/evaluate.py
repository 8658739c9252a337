"""`tunelab eval`: base vs tuned on a test set."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from tunelab import api
from tunelab.cli.app import app
from tunelab.cli.render import DEVICE_MAP_HELP, ProgressView, checked_device_map, console, print_json
from tunelab.evaluate.report import METRICS


@app.command("eval")
def eval_cmd(
    run_dir: Path = typer.Argument(..., help="run directory written by `tunelab train`"),
    data: Path = typer.Option(..., "--data", help="test JSONL (same formats as training)"),
    limit: int = typer.Option(None, "--limit", help="evaluate the first N rows only"),
    forgetting: bool = typer.Option(True, "--forgetting/--no-forgetting",
                                    help="general-knowledge QA and prose perplexity, base vs tuned"),
    bias: bool = typer.Option(True, "--bias/--no-bias", help="counterfactual bias probes, base vs tuned"),
    judge: str = typer.Option(None, "--judge", help="pairwise judge: a model/run, or URL#MODEL of an OpenAI API"),
    judge_key: str = typer.Option(None, "--judge-key", help="API key for a --judge endpoint"),
    fresh_base: bool = typer.Option(False, "--fresh-base",
                                    help="compute the base model's side again instead of reusing an earlier eval's "
                                         "(same base, rows and settings)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of tables"),
    device_map: str = typer.Option(None, "--device-map", help=DEVICE_MAP_HELP),
) -> None:
    """Compare the base model and the tuned model on the same rows (greedy decoding), and check
    forgetting, bias and overfitting. Writes eval.json, report.md and report.html into the run."""
    with ProgressView() as progress:
        result = api.evaluate(run_dir, data, limit=limit, forgetting=forgetting, bias=bias, judge=judge,
                              judge_key=judge_key, fresh_base=fresh_base, device_map=checked_device_map(device_map),
                              events=progress)
    if as_json:
        print_json({k: v for k, v in result.items() if k not in ("samples",)})
        return
    render_comparison(result)
    render_risks(result)
    if result.get("base_reused"):
        console.print(f"base model results reused from an earlier eval of the same rows: "
                      f"{', '.join(result['base_reused'])} (--fresh-base recomputes them)")
    console.print(f"report: {Path(run_dir) / 'report.md'} and report.html")


def render_risks(result: dict) -> None:
    fg = result.get("forgetting")
    if fg:
        d = fg["delta"]
        console.print(f"forgetting: general QA accuracy {fg['base']['qa_accuracy']:.3f} → {fg['tuned']['qa_accuracy']:.3f} "
                      f"(drop {d['qa_accuracy_drop']:+.3f}); prose perplexity {fg['base']['prose_perplexity']:.2f} → "
                      f"{fg['tuned']['prose_perplexity']:.2f} (×{d['prose_perplexity_ratio']:.3f})")
    bias = result.get("bias")
    if bias:
        gaps = ", ".join(f"{a} {v['base_gap']:.2f}→{v['tuned_gap']:.2f}" for a, v in bias["axes"].items())
        flag = f"[red]amplified: {', '.join(bias['amplified'])}[/red]" if bias["amplified"] else "no amplification"
        console.print(f"bias gaps (base→tuned): {gaps}; {flag}")
    of = result.get("overfitting")
    if of:
        console.print(("[red]overfitting: [/red]" if of["flag"] else "overfitting: none flagged; ") + of["reason"])
    if result.get("judge"):
        j = result["judge"]
        console.print(f"judge {j['judge']}: tuned win rate {j['tuned_win_rate']}")


def render_comparison(result: dict) -> None:
    table = Table(title=f"base vs tuned on {result['n']} rows")
    for col in ("metric", "base", "tuned"):
        table.add_column(col, justify="right" if col != "metric" else "left")
    for key, direction in METRICS:
        if key not in result["base"]:
            continue
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


@app.command("compare")
def compare_cmd(
    run_dirs: list[Path] = typer.Argument(..., help="run directories to put side by side"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Put several runs in one table: method, training and evaluation numbers."""
    rows = api.compare(run_dirs)
    if as_json:
        print_json(rows)
        return
    cols = ["run", "method", "trainable %", "steps", "train loss", "val loss", "rougeL", "exact_match",
            "QA drop", "ppl ×", "bias amplified", "overfit"]
    table = Table(title=f"{len(rows)} runs")
    for col in cols:
        table.add_column(col)
    for r in rows:
        table.add_row(*[_cell(r.get(c)) for c in cols])
    console.print(table)


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, list):
        return ", ".join(v) or "none"
    return str(v)

