"""Shared rendering helpers: consoles, progress bars for training and eval events."""

from __future__ import annotations

import json

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console()
err_console = Console(stderr=True)


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))


class TrainProgress:
    """Renders training events as one progress bar with loss, validation loss and ETA."""

    def __init__(self, con: Console = err_console) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  val {task.fields[val]}"),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            console=con, transient=False,
        )
        self.task = None
        self.console = con

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def __call__(self, event: dict) -> None:
        kind = event["event"]
        if kind == "trainable":
            self.console.print(
                f"trainable parameters: {event['trainable']:,} of {event['total']:,} ({event['percent']:.2f}%)")
        elif kind == "start":
            self.task = self.progress.add_task("train", total=event["total_steps"], completed=event["step"],
                                               loss="-", val="-")
        elif kind == "step" and self.task is not None:
            self.progress.update(self.task, completed=event["step"], loss=_fmt(event["loss"]),
                                 val=_fmt(event["eval_loss"]))
        elif kind == "eval" and self.task is not None:
            self.progress.update(self.task, val=_fmt(event["eval_loss"]))


class EvalProgress:
    """Renders eval events: one bar per side (base, tuned)."""

    def __init__(self, con: Console = err_console) -> None:
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=con)
        self.tasks: dict[str, int] = {}

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def __call__(self, event: dict) -> None:
        if event["event"] == "eval_side":
            self.tasks[event["side"]] = self.progress.add_task(f"generate ({event['side']})", total=event["total"])
        elif event["event"] == "generated":
            self.progress.advance(self.tasks[event["side"]], event["n"])


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.4f}"
