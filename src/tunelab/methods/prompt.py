"""Prompt tuning: trainable soft-prompt embeddings prepended to the input
(PEFT's PromptTuningConfig). The smallest adapter of all; it cannot be merged."""

from __future__ import annotations

from pydantic import Field

from tunelab.typed import Section


class PromptSettings(Section):
    num_virtual_tokens: int = Field(20, ge=1, description="soft prompt length in virtual tokens")
    init: str = Field("sample_vocab", pattern="^(sample_vocab|random)$",
                      description="start from embeddings of random vocabulary tokens, or random vectors")


def apply(model, settings: PromptSettings):
    from peft import PromptTuningConfig, PromptTuningInit, get_peft_model

    init = PromptTuningInit.SAMPLE_VOCAB if settings.init == "sample_vocab" else PromptTuningInit.RANDOM
    return get_peft_model(model, PromptTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=settings.num_virtual_tokens, prompt_tuning_init=init,
    ))
