"""The typer application: one sub-module per command group registers its commands here."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="tunelab",
    help="Fine-tune open LLMs on your own data: from a JSONL file to an evaluated, served model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
data_app = typer.Typer(help="Check and prepare datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


# Command modules register themselves on `app` / `data_app` when imported.
from tunelab.cli import (chat, data, demo, estimate, evaluate, export, jobs, models, rag, rlhf,  # noqa: E402,F401
                         serve, train)
