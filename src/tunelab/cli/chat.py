"""`tunelab chat`: talk to a tuned run or a base model."""

from __future__ import annotations

from pathlib import Path

import typer

from tunelab import api
from tunelab.cli.app import app
from tunelab.cli.render import DEVICE_MAP_HELP, checked_device_map
from tunelab.cli.render import console
from tunelab.errors import ConfigError


@app.command("chat")
def chat_cmd(
    run_dir: Path = typer.Argument(None, help="run directory (omit to talk to --model)"),
    model: str = typer.Option(None, "--model", "-m", help="talk to a base model instead of a run"),
    prompt: str = typer.Option(None, "--prompt", "-p", help="answer this one prompt and exit (for scripts)"),
    system: str = typer.Option(None, "--system", help="system message"),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", min=1),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0, help="0 = greedy"),
    device_map: str = typer.Option(None, "--device-map", help=DEVICE_MAP_HELP),
) -> None:
    """Chat in a REPL (empty line or Ctrl-D to quit), or answer one --prompt."""
    if (run_dir is None) == (model is None):
        raise ConfigError("pass either a RUN_DIR or --model M")
    loaded = api.load(run_dir if run_dir is not None else model, device_map=checked_device_map(device_map))
    history: list[dict] = [{"role": "system", "content": system}] if system else []

    def answer(text: str) -> str:
        history.append({"role": "user", "content": text})
        out = api.reply(loaded, history, max_new_tokens=max_new_tokens, temperature=temperature)
        history.append({"role": "assistant", "content": out})
        return out

    if prompt is not None:
        print(answer(prompt))
        return
    console.print(f"[dim]chatting with {run_dir or model}; empty line or Ctrl-D to quit[/dim]")
    while True:
        try:
            text = console.input("[bold cyan]you>[/bold cyan] ")
        except EOFError:
            break
        if not text.strip():
            break
        console.print(f"[bold green]model>[/bold green] {answer(text)}")
