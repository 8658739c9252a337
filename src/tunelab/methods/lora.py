"""LoRA: train low-rank updates B·A beside frozen linear weights (PEFT's LoraConfig).

Defaults (rank 8, alpha 16, all linear layers but the LM head) train 1.78% of the bundled
model's parameters and learn a narrow task in a few dozen steps on CPU.
"""

from __future__ import annotations

from pydantic import Field

from tunelab.typed import Section


class LoraSettings(Section):
    r: int = Field(8, ge=1, description="LoRA rank")
    alpha: int = Field(16, ge=1, description="LoRA scaling numerator (scale = alpha / r)")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the LoRA input")
    target_modules: list[str] | str = Field("all-linear", description="module names to adapt, or 'all-linear'")


def peft_config(settings: LoraSettings, task_type: str = "CAUSAL_LM", **extra):
    from peft import LoraConfig

    return LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
        task_type=task_type,  # SEQ_CLS also trains and saves a sequence classifier's score head
        **extra,
    )


def apply(model, settings: LoraSettings, task: str = "CAUSAL_LM"):
    from peft import get_peft_model

    return get_peft_model(model, peft_config(settings, task_type=task))
