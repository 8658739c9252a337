"""`tunelab demo`: the whole path on the bundled model and sample data, in minutes on a CPU."""

from __future__ import annotations

from pathlib import Path

import typer

from tunelab import api
from tunelab.cli.app import app
from tunelab.cli.evaluate import render_comparison
from tunelab.cli.render import ProgressView, console


@app.command("demo")
def demo_cmd(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="folder for the demo's data and run"),
    sets: list[str] = typer.Option(None, "--set", help="override a config key, e.g. --set train.epochs=2"),
    rlhf: bool = typer.Option(False, "--rlhf", help="instead: SFT -> reward model -> PPO on the shipped preference "
                                                    "pairs (concise over rambling answers), about 12 minutes on 2 cores"),
    rag: bool = typer.Option(False, "--rag", help="also: base, base+RAG, tuned and tuned+RAG on questions about a "
                                                  "shipped manual (knowledge) and on the calendar rows (a format)"),
) -> None:
    """Fine-tune the bundled SmolLM2-135M with LoRA to write calendar entries, then compare base vs tuned."""
    if rlhf:
        from tunelab.cli.train import show_stage

        console.print("[bold]tunelab demo --rlhf[/bold]: SFT, a reward model and PPO on 410 preference pairs "
                      "(a concise answer preferred over a rambling one), LoRA, CPU.")
        with ProgressView() as progress:
            runs = api.demo_rlhf(out if out != Path("runs/demo") else Path("runs/demo-rlhf"), events=progress)
        console.print(f"sft: {runs['sft']}")
        for stage in ("reward", "ppo"):
            show_stage(api.open_run(runs[stage]))
        return
    console.print("[bold]tunelab demo[/bold]: teach SmolLM2-135M to turn meeting notes into calendar entries "
                  f"(LoRA, CPU). Held-out test rows: {api.DEMO_TEST_ROWS}.")

    if rag:
        _demo_rag(out, sets)
        return
    with ProgressView() as progress:
        result = api.demo(out, sets=sets, events=progress)
    s = result["summary"]
    console.print(f"trained {s['steps']} steps in {s['train_seconds']} s; validation loss {s['eval_loss']}")
    render_comparison(result["eval"])
    console.print(f"[green]demo finished in {result['seconds']:.0f} s[/green]; run directory: {result['run']}")
    console.print(f"try it: tunelab chat {result['run']} --prompt \"Turn this note into a calendar entry.\\n\\n"
                  "lunch with Ana on Friday at 12:30 PM at the cafe\"")


def _demo_rag(out: Path, sets: list[str] | None) -> None:
    from tunelab.cli.rag import render_compare

    with ProgressView() as progress:
        result = api.demo_rag(out, sets=sets, events=progress)
    console.print(f"trained {result['demo']['summary']['steps']} steps; run directory: {result['demo']['run']}")
    for title, key in (("knowledge: questions about the shipped manual", "knowledge"),
                       ("format: the held-out calendar rows", "calendar")):
        console.rule(title)
        render_compare(result[key])
