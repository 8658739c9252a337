"""`tunelab reward` (score an answer with a reward model) and `tunelab rlhf` (the whole pipeline)."""

from __future__ import annotations

from pathlib import Path

import typer

from tunelab import api
from tunelab.cli.app import app
from tunelab.cli.render import ProgressView, console, print_json


@app.command("reward")
def reward_cmd(
    run: Path = typer.Argument(..., help="reward run directory (from `tunelab train --stage reward`)"),
    prompt: str = typer.Option(..., "--prompt", help="the user's message"),
    response: list[str] = typer.Option(..., "--response", help="an answer to score (repeat to compare several)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Score answers to a prompt with a trained reward model (higher is preferred)."""
    scores = api.reward(run, prompt, response)
    if as_json:
        print_json([{"response": r, "reward": s} for r, s in zip(response, scores)])
        return
    for r, s in zip(response, scores):
        console.print(f"[bold]{s:+.4f}[/bold]  {r}")


@app.command("rlhf")
def rlhf_cmd(
    config: Path = typer.Argument(..., help="YAML config: shared sections (model, method, train, rl) and "
                                            "stages: {sft: {data: ...}, reward: {...}, ppo|rloo: {...}}"),
    out: Path = typer.Option(Path("runs/rlhf"), "--out", help="folder for the three run directories"),
) -> None:
    """SFT -> reward model -> PPO (or RLOO) with one config; each stage in its own run directory."""
    with ProgressView() as progress:
        runs = api.rlhf(config, out=out, events=progress)
    from tunelab.cli.train import show_stage

    console.print(f"[green]sft[/green]: {runs['sft']}")
    for stage in list(runs)[1:]:
        show_stage(api.open_run(runs[stage]))
