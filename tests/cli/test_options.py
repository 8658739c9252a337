"""Each `tunelab train` flag that sets a config key is defined once: its help is that key's
description, and the key exists."""

from __future__ import annotations

import click
import typer

from tunelab.cli.app import app
from tunelab.cli.train import FLAG_KEYS
from tunelab.config import RunConfig, describe


def _train_params() -> dict[str, click.Parameter]:
    command = typer.main.get_command(app).commands["train"]
    return {p.name: p for p in command.params}


def test_every_flag_sets_a_real_config_key_and_shows_its_description():
    params = _train_params()
    defaults = RunConfig().model_dump()
    for flag, key in FLAG_KEYS.items():
        section, name = key.split(".")
        assert name in defaults[section], key
        assert describe(key) in params[flag].help, flag


def test_every_config_field_is_described():
    from pydantic import BaseModel

    undescribed = []

    def walk(model, prefix=""):
        for name, field in model.model_fields.items():
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                walk(field.annotation, f"{prefix}{name}.")
            elif not field.description:
                undescribed.append(prefix + name)

    walk(RunConfig)
    assert not undescribed
