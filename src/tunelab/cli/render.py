"""Shared rendering helpers: consoles, progress bars for training and eval events."""

from __future__ import annotations

import json

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console()
err_console = Console(stderr=True)


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))


class ProgressView:
    """Renders training and evaluation events in one live display (rich allows only one).

    Training: one bar with step count, loss, validation loss and ETA. Eval: one bar per side.
    """

    def __init__(self, con: Console = err_console) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            console=con,
        )
        self.console = con
        self.train_task = None
        self.eval_tasks: dict[str, int] = {}

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def __call__(self, event: dict) -> None:
        kind = event["event"]
        if kind == "trainable":
            self.progress.console.print(
                f"trainable parameters: {event['trainable']:,} of {event['total']:,} ({event['percent']:.2f}%)")
        elif kind == "start":
            self.train_task = self.progress.add_task("train", total=event["total_steps"], completed=event["step"],
                                                     info="loss -  val -")
        elif kind in ("step", "eval") and self.train_task is not None:
            task = self.progress.tasks[self.train_task]
            loss = event.get("loss", task.fields.get("loss"))
            val = event.get("eval_loss", task.fields.get("val"))
            info = event.get("info") or f"loss {_fmt(loss)}  val {_fmt(val)}"  # PPO sends reward/KL/entropy
            self.progress.update(self.train_task, completed=event["step"], loss=loss, val=val, info=info)
        elif kind == "eval_side":
            self.eval_tasks[event["side"]] = self.progress.add_task(
                f"generate ({event['side']})", total=event["total"], info="")
        elif kind == "note":
            self.progress.console.print(f"[dim]{event['text']}[/dim]", soft_wrap=True)  # a note is one line
        elif kind == "generated":
            self.progress.advance(self.eval_tasks[event["side"]], event["n"])


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.4f}"


DEVICE_MAP_HELP = ("auto: spread the layers over every visible GPU, then CPU memory (a model larger than one GPU); "
                   "default: one device, or auto when the model does not fit one GPU")


def checked_device_map(value: str | None) -> str | None:
    """--device-map: only "auto" (or nothing) is meaningful for a whole model."""
    from tunelab.errors import ConfigError

    if value not in (None, "auto"):
        raise ConfigError(f"--device-map {value!r}: expected auto")
    return value
