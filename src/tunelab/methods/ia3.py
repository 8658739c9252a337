"""IA3: learned per-channel scaling vectors on keys, values and the MLP down-projection
(PEFT's IA3Config). The fewest trainable parameters of the additive methods; merges exactly."""

from __future__ import annotations

from pydantic import Field

from tunelab.typed import Section


class Ia3Settings(Section):
    target_modules: list[str] | None = Field(
        None, description="modules to scale (default: PEFT's choice for the architecture, e.g. k/v/down_proj)")
    feedforward_modules: list[str] | None = Field(
        None, description="which targets are feed-forward (scaled on their input); default: PEFT's choice")


def apply(model, settings: Ia3Settings):
    from peft import IA3Config, get_peft_model

    return get_peft_model(model, IA3Config(
        task_type="CAUSAL_LM",
        target_modules=settings.target_modules,
        feedforward_modules=settings.feedforward_modules,
    ))
