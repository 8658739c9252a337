"""The typer application: one sub-module per command group registers its commands here."""

from __future__ import annotations

import logging
import os
import warnings

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


def quiet_libraries() -> None:
    """Keep library chatter (load bars, deprecation notes) out of the user's terminal."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    for name in ("transformers", "trl", "peft", "datasets", "accelerate", "huggingface_hub", "torch"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for module in ("transformers", "trl", "peft", "torch", "accelerate", "datasets"):
        warnings.filterwarnings("ignore", module=module)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # transformers missing: the commands that need it will say so
        pass


# Command modules register themselves on `app` / `data_app` when imported.
from tunelab.cli import chat, data, demo, evaluate, export, models, train  # noqa: E402,F401
