"""DoRA: LoRA on the direction of each weight plus a trainable magnitude vector
(PEFT's ``use_dora``). Closer to full fine-tuning than LoRA at the same rank; slower per step."""

from __future__ import annotations

from tunelab.methods.lora import LoraSettings, peft_config


class DoraSettings(LoraSettings):
    pass


def apply(model, settings: DoraSettings, task: str = "CAUSAL_LM"):
    from peft import get_peft_model

    return get_peft_model(model, peft_config(settings, task_type=task, use_dora=True))
