"""LoRA: train low-rank updates B·A beside frozen linear weights (PEFT's LoraConfig).

Rank and alpha default to ``auto``: a supervised run picks them from its data (train/auto.py,
docs/defaults.md). Where no data is known (the preference stages, a bare ``apply``), auto is
rank 8, alpha 16 on all linear layers but the LM head: 1.78% of the bundled model's parameters.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from tunelab.typed import Section


class LoraSettings(Section):
    r: int | Literal["auto"] = Field("auto", description="LoRA rank; auto: from the answer tokens (train/auto.py)")
    alpha: int | Literal["auto"] = Field("auto", description="LoRA scaling numerator (scale = alpha / r); auto: 2 x r")
    # 0 by default: on the SFT benchmark dropout 0.05 cost a third of the step time (a mask and a
    # dropped copy of every adapted layer's input) and a quarter of the peak memory for the same
    # validation loss (docs/performance.md, "LoRA dropout")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the LoRA input")
    target_modules: list[str] | str = Field("all-linear", description="module names to adapt, or 'all-linear'")

    @field_validator("r", "alpha", mode="before")
    @classmethod
    def _auto_or_whole(cls, value):
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        if isinstance(value, bool) or not isinstance(value, (int, float, str)) or not _whole_above_zero(value):
            raise ValueError("expected auto or a whole number above 0")
        return int(float(value))


# What auto means where nothing is known about the data (the values before auto existed).
UNRESOLVED_R = 8


def _whole_above_zero(value) -> bool:
    try:
        number = float(value)
    except ValueError:
        return False
    return number > 0 and number == int(number)


def rank_and_alpha(settings: LoraSettings) -> tuple[int, int]:
    """The rank and alpha to build with: auto (unresolved) is rank 8 with alpha twice the rank."""
    r = UNRESOLVED_R if settings.r == "auto" else settings.r
    return r, 2 * r if settings.alpha == "auto" else settings.alpha


def peft_config(settings: LoraSettings, task_type: str = "CAUSAL_LM", **extra):
    from peft import LoraConfig

    r, alpha = rank_and_alpha(settings)
    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
        task_type=task_type,  # SEQ_CLS also trains and saves a sequence classifier's score head
        **extra,
    )


def apply(model, settings: LoraSettings, task: str = "CAUSAL_LM"):
    from peft import get_peft_model

    return get_peft_model(model, peft_config(settings, task_type=task))
