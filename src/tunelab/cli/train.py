"""`tunelab train`: fine-tune a model on a JSONL file and write a run directory."""

from __future__ import annotations

from pathlib import Path

import typer

from tunelab import api
from tunelab.cli.app import app
from tunelab.cli.render import ProgressView, console
from tunelab.config import build_config
from tunelab.methods import METHODS


@app.command("train")
def train_cmd(
    config: Path = typer.Argument(None, help="YAML config (sections: model, data, method, train, eval)"),
    model: str = typer.Option(None, "--model", "-m", help="catalog name, Hugging Face id or local folder"),
    method: str = typer.Option(None, "--method", help=f"one of: {', '.join(METHODS)}"),
    data: str = typer.Option(None, "--data", help="training JSONL"),
    val: str = typer.Option(None, "--val", help="validation JSONL (default: a seeded 10%% of --data)"),
    epochs: float = typer.Option(None, "--epochs", help="passes over the data"),
    max_steps: int = typer.Option(None, "--max-steps", help="stop after N optimizer steps"),
    lr: float = typer.Option(None, "--lr", help="peak learning rate"),
    batch_size: int = typer.Option(None, "--batch-size", help="rows per step"),
    max_length: int = typer.Option(None, "--max-length", help="truncate rows to N tokens"),
    out: Path = typer.Option(None, "--out", help="run directory to create (default: runs/<method>-<time>)"),
    seed: int = typer.Option(None, "--seed", help="seed for split, init and sampling"),
    sets: list[str] = typer.Option(None, "--set", help="override any config key: --set train.lr=1e-4"),
    resume: Path = typer.Option(None, "--resume", help="resume this run directory from its last checkpoint"),
    stage: str = typer.Option(None, "--stage", help="sft (default), reward, dpo, ppo or rloo"),
    reward_model: str = typer.Option(None, "--reward-model", help="reward run directory (--stage ppo, rloo)"),
    init: str = typer.Option(None, "--init", help="SFT run directory to start the PPO/RLOO policy from"),
) -> None:
    """Fine-tune a model. Defaults: LoRA r=8 on the bundled SmolLM2-135M, lr 2e-4, 3 epochs, batch 8."""
    cfg = build_config(config, overrides={
        "model.name": model, "method.name": method, "data.train": data, "data.val": val,
        "train.epochs": epochs, "train.max_steps": max_steps, "train.lr": lr, "train.batch_size": batch_size,
        "data.max_length": max_length, "train.seed": seed, "train.stage": stage, "rl.reward_model": reward_model,
        "rl.init": init,
    }, sets=sets)
    with ProgressView() as progress:
        run = api.train(cfg, out=out, resume=resume, events=progress)
    s = run.summary()
    if s.get("stage", "sft") != "sft":
        show_stage(run)
        return
    console.print(
        f"[green]done[/green]: {s['steps']} steps in {s['train_seconds']} s "
        f"({s['tokens_per_second']} tokens/s), train loss {s['train_loss']}, validation loss {s['eval_loss']}")
    console.print(f"run directory: [bold]{run.path}[/bold]  (next: tunelab eval {run.path} --data TEST.jsonl)")


def show_stage(run) -> None:
    """One line per preference stage result (the full numbers are in eval.json / report.md)."""
    import json

    s, ev = run.summary(), json.loads((run.path / "eval.json").read_text())
    console.print(f"[green]done[/green]: {s['stage']} stage, {s['steps']} steps in {s['train_seconds']} s")
    if ev["stage"] == "reward":
        console.print(f"held-out pairwise accuracy: [bold]{ev['pairwise_accuracy']}[/bold] on {ev['held_out_pairs']} pairs")
    elif ev["stage"] == "dpo":
        console.print(f"held-out preference accuracy: [bold]{ev['preference_accuracy']}[/bold] on "
                      f"{ev['held_out_pairs']} pairs (reward margin {ev['reward_margin']})")
    elif ev.get("held_out_prompts"):
        console.print(f"reward {s['first_reward']} (step 1) -> {s['last_reward']} (last step); win rate over "
                      f"{ev['against']}: [bold]{ev['win_rate']}[/bold] on {ev['held_out_prompts']} held-out prompts, "
                      f"KL {ev['kl_to_reference']}")
    console.print(f"run directory: [bold]{run.path}[/bold]  (report: {run.path / 'report.md'})")
