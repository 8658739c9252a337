"""Fine-tuning methods: one module each, registered by name in METHODS.

A method turns a freshly loaded base model into the model the trainer optimises, and says
how its result is saved (a PEFT adapter or a whole model) and whether it can be merged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from tunelab.errors import ConfigError, one_of
from tunelab.methods import full, lora


@dataclass(frozen=True)
class Method:
    name: str
    summary: str
    apply: Callable[[Any, Any], Any]  # (model, settings) -> model to train
    settings_attr: str | None  # field of MethodSection holding this method's settings
    saves_adapter: bool  # True: run/adapter (PEFT); False: run/model (whole model)
    can_merge: bool


METHODS: dict[str, Method] = {
    "lora": Method("lora", "low-rank adapters on the linear layers (PEFT)", lora.apply, "lora", True, True),
    "full": Method("full", "every weight is trained; the best quality, the most memory", full.apply, None, False, True),
}


def get(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(one_of("method", name, list(METHODS))) from None


def trainable_summary(model) -> dict:
    """Trainable and total parameter counts (and the share) of a model about to train."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable": trainable, "total": total, "percent": round(100.0 * trainable / max(total, 1), 4)}
