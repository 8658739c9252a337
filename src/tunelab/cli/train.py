"""`tunelab train`: fine-tune a model on a JSONL file and write a run directory.

Each flag that sets a config key takes its help from that key's description (config.describe),
so the text is written once; tests/cli check every such flag maps onto a real key."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from tunelab import api
from tunelab.cli.app import app
from tunelab.cli.render import ProgressView, console
from tunelab.config import build_config, describe, with_policy_sources
from tunelab.data.sources import parse_columns
from tunelab.methods import METHODS
from tunelab.train import launch

# flag -> the config key it sets
FLAG_KEYS = {
    "model": "model.name", "method": "method.name", "data": "data.train", "val": "data.val",
    "epochs": "train.epochs", "max_steps": "train.max_steps", "lr": "train.lr", "batch_size": "train.batch_size",
    "max_length": "data.max_length", "seed": "train.seed", "stage": "train.stage", "distributed": "train.distributed",
    "time_budget": "train.time_budget", "chat_template": "data.chat_template", "columns": "data.columns",
}


@app.command("train")
def train_cmd(
    config: Path = typer.Argument(None, help="YAML config (sections: model, data, method, train, eval, dpo, ppo, rloo, grpo)"),
    model: str = typer.Option(None, "--model", "-m", help=describe("model.name")),
    method: str = typer.Option(None, "--method", help=f"{describe('method.name')}: {', '.join(METHODS)}"),
    data: str = typer.Option(None, "--data", help=describe("data.train")),
    val: str = typer.Option(None, "--val", help=describe("data.val")),
    epochs: str = typer.Option(None, "--epochs", help=describe("train.epochs")),
    max_steps: int = typer.Option(None, "--max-steps", help=describe("train.max_steps")),
    lr: str = typer.Option(None, "--lr", help=describe("train.lr")),
    batch_size: str = typer.Option(None, "--batch-size", help=describe("train.batch_size")),
    time_budget: str = typer.Option(None, "--time-budget", help=describe("train.time_budget")),
    max_length: int = typer.Option(None, "--max-length", help=describe("data.max_length")),
    chat_template: str = typer.Option(None, "--chat-template", help=describe("data.chat_template")),
    columns: str = typer.Option(None, "--columns", help=describe("data.columns") + " (as question=instruction,answer=output)"),
    seed: int = typer.Option(None, "--seed", help=describe("train.seed")),
    stage: str = typer.Option(None, "--stage", help=describe("train.stage")),
    reward_model: str = typer.Option(None, "--reward-model", help=describe("ppo.reward_model") + " (--stage ppo, rloo, grpo)"),
    init: str = typer.Option(None, "--init", help=describe("ppo.init") + " (--stage ppo, rloo, grpo)"),
    out: Path = typer.Option(None, "--out", help="run directory to create (default: runs/<method>-<time>)"),
    sets: list[str] = typer.Option(None, "--set", help="override any config key: --set train.lr=1e-4"),
    resume: Path = typer.Option(None, "--resume", help="continue this run directory from its newest complete checkpoint"),
    distributed: str = typer.Option(None, "--distributed", help=describe("train.distributed")),
    nproc_per_node: int = typer.Option(None, "--nproc-per-node", help="processes on this machine (one per GPU; on "
                                       "a CPU, cores are shared among them): re-runs this command under torchrun"),
    nnodes: int = typer.Option(None, "--nnodes", help="machines in the run (each runs this command with its --node-rank)"),
    node_rank: int = typer.Option(None, "--node-rank", help="this machine's number, 0 to nnodes-1 (0 writes the run)"),
    master_addr: str = typer.Option(None, "--master-addr", help="address of machine 0, where the processes meet"),
    master_port: int = typer.Option(None, "--master-port", help="free port on machine 0 (default 29500)"),
) -> None:
    """Fine-tune a model. Defaults: LoRA on the bundled SmolLM2-135M; epochs, lr, batch size and rank chosen
    from your data (auto, said in one line); the run ends on its best validation checkpoint."""
    flags = {"model": model, "method": method, "data": data, "val": val, "epochs": epochs, "max_steps": max_steps,
             "lr": lr, "batch_size": batch_size, "max_length": max_length, "seed": seed, "stage": stage,
             "distributed": distributed, "time_budget": time_budget, "chat_template": chat_template,
             "columns": parse_columns(columns) or None}
    cfg = None
    if resume is None:
        cfg = build_config(config, overrides={FLAG_KEYS[k]: v for k, v in flags.items()}, sets=sets)
        cfg = with_policy_sources(cfg, reward_model, init)
    if launch.wanted(nproc_per_node, nnodes):
        launch.check(cfg, resume)
        launch.launch(launch.strip_launch_flags(sys.argv[1:]), nproc_per_node or 1, nnodes or 1, node_rank or 0,
                      master_addr, master_port)
        return
    if not launch.is_main():  # the other processes of a multi-process run train silently
        api.train(cfg, out=out, resume=resume)
        return
    with ProgressView() as progress:
        run = api.train(cfg, out=out, resume=resume, events=progress)
    s = run.summary()
    if s.get("stage", "sft") != "sft":
        show_stage(run)
        return
    console.print(
        f"[green]done[/green]: {s['steps']} steps in {s['train_seconds']} s "
        f"({s['tokens_per_second']} tokens/s), train loss {s['train_loss']}, validation loss {s['eval_loss']}")
    if s.get("best_step") is not None:
        console.print(f"best checkpoint: step {s['best_step']} of {s['steps']} (validation loss {s['best_eval_loss']}); "
                      "the saved adapter is that step's")
    console.print(f"run directory: [bold]{run.path}[/bold]  (next: tunelab eval {run.path} --data TEST.jsonl)")


def show_stage(run) -> None:
    """One line per preference stage result (the full numbers are in run.json and train_report.md)."""
    s = run.summary()
    held = s.get("held_out", {})
    console.print(f"[green]done[/green]: {s['stage']} stage, {s['steps']} steps in {s['train_seconds']} s")
    if s["stage"] == "reward":
        console.print(f"held-out pairwise accuracy: [bold]{held['pairwise_accuracy']}[/bold] on {held['pairs']} pairs")
    elif s["stage"] == "dpo":
        console.print(f"held-out preference accuracy: [bold]{held['preference_accuracy']}[/bold] on "
                      f"{held['pairs']} pairs (reward margin {held['reward_margin']})")
    elif held.get("prompts"):
        console.print(f"reward {s['first_reward']} (first step) -> {s['last_reward']} (last step); win rate over "
                      f"{held['against']}: [bold]{held['win_rate']}[/bold] on {held['prompts']} held-out prompts, "
                      f"KL {held['kl_to_reference']}")
    console.print(f"run directory: [bold]{run.path}[/bold]  (report: {run.path / 'train_report.md'})")
