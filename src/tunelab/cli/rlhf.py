"""`tunelab reward` (score answers, or a whole file, with a reward model) and `tunelab rlhf` (the whole pipeline)."""

from __future__ import annotations

from pathlib import Path

import typer

from tunelab import api
from tunelab.cli.app import app
from tunelab.cli.render import ProgressView, console, print_json
from tunelab.errors import ConfigError


@app.command("reward")
def reward_cmd(
    run: Path = typer.Argument(..., help="reward run directory (from `tunelab train --stage reward`)"),
    prompt: str = typer.Option(None, "--prompt", help="the user's message"),
    response: list[str] = typer.Option(None, "--response", help="an answer to score (repeat to compare several)"),
    data: Path = typer.Option(None, "--data", help="JSONL of rows to score instead: prompt+response, messages "
                                                   "ending with the answer, or prompt+chosen+rejected pairs"),
    out: Path = typer.Option(None, "--out", help="with --data: where the scores go (default FILE.scores.jsonl)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Score answers with a trained reward model (higher is preferred): one prompt's answers, or
    every row of a file (--data) in one process, with pairwise accuracy for preference pairs."""
    if data is not None:
        if prompt is not None or response:
            raise ConfigError("give --data FILE, or --prompt with --response, not both")
        return _score_file(run, data, out, as_json)
    if prompt is None or not response:
        raise ConfigError("give --prompt and at least one --response, or --data FILE.jsonl")
    scores = api.reward(run, prompt, response)
    if as_json:
        print_json([{"response": r, "reward": s} for r, s in zip(response, scores)])
        return
    for r, s in zip(response, scores):
        console.print(f"[bold]{s:+.4f}[/bold]  {r}")


def _score_file(run: Path, data: Path, out: Path | None, as_json: bool) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    from tunelab.cli.render import err_console
    from tunelab.evaluate.reward_file import score_file

    bar = Progress("[bold]score", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), "eta",
                   TimeRemainingColumn(), console=err_console, transient=True)

    def start(total: int):  # called once the rows are checked: a bad file prints only its error
        bar.start()
        task = bar.add_task("score", total=total)
        return lambda n: bar.advance(task, n)

    try:
        summary = score_file(run, data, out, progress_start=start)
    finally:
        if bar.live.is_started:
            bar.stop()
    if as_json:
        print_json(summary)
        return
    if summary["kind"] == "pairs":
        console.print(f"{summary['rows']} pairs: accuracy [bold]{summary['accuracy']:.2%}[/bold] "
                      f"(chosen above rejected), mean margin {summary['mean_margin']:+.4f}")
    else:
        console.print(f"{summary['rows']} answers: mean score [bold]{summary['mean_score']:+.4f}[/bold] "
                      f"(min {summary['min']:+.4f}, median {summary['median']:+.4f}, max {summary['max']:+.4f})")
    console.print(f"scores: {summary['out']} ({summary['rows_per_s']} rows/s)")


@app.command("rlhf")
def rlhf_cmd(
    config: Path = typer.Argument(..., help="YAML config: shared sections (model, method, train, rl) and "
                                            "stages: {sft: {data: ...}, reward: {...}, ppo|rloo|grpo: {...}}"),
    out: Path = typer.Option(Path("runs/rlhf"), "--out", help="folder for the three run directories"),
) -> None:
    """SFT -> reward model -> PPO (or RLOO) with one config; each stage in its own run directory."""
    with ProgressView() as progress:
        runs = api.rlhf(config, out=out, events=progress)
    from tunelab.cli.train import show_stage

    console.print(f"[green]sft[/green]: {runs['sft']}")
    for stage in list(runs)[1:]:
        show_stage(api.open_run(runs[stage]))
