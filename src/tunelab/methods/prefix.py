"""Prefix tuning: trainable key/value vectors prepended to every attention layer
(PEFT's PrefixTuningConfig). The base model is untouched; the prefix cannot be merged."""

from __future__ import annotations

from pydantic import Field

from tunelab.typed import Section


class PrefixSettings(Section):
    num_virtual_tokens: int = Field(20, ge=1, description="prefix length in virtual tokens")
    projection: bool = Field(False, description="reparameterise the prefix through an MLP while training")


def apply(model, settings: PrefixSettings):
    from peft import PrefixTuningConfig, get_peft_model

    return get_peft_model(model, PrefixTuningConfig(
        task_type="CAUSAL_LM",
        num_virtual_tokens=settings.num_virtual_tokens,
        prefix_projection=settings.projection,
    ))
