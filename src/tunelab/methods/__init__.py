"""Fine-tuning methods: one module each, registered by name in METHODS.

A method turns a freshly loaded base model into the model the trainer optimises. Its
``saves`` says what a run keeps: a PEFT adapter (loads with plain peft), our bottleneck
adapter, or a whole model; ``can_merge`` says whether export can fold it into the base.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from tunelab.errors import ConfigError, one_of
from tunelab.methods import adapter, dora, full, ia3, lora, prefix, prompt, qlora


@dataclass(frozen=True)
class Method:
    """Everything the rest of tunelab asks about a method, in one record (tests/methods check
    every method declares every field)."""

    name: str
    summary: str
    module: ModuleType  # has apply(model, settings[, task]); optionally load_kwargs(settings)
    settings_cls: type | None  # its pydantic settings (MethodSection gets one field per method)
    saves: str  # what a run keeps: "peft" | "bottleneck" | "model"
    can_merge: bool  # export --merge can fold it into the base weights
    bf16_base: bool  # the frozen base may be stored in bf16 under bf16 compute
    packable: bool  # trains on padding-free packed rows (prompt-learning methods prepend tokens per row)
    servable: bool  # the batching server can share a base between requests with it
    lora_family: bool  # a LoRA adapter: the preference stages (reward, DPO, PPO, RLOO) train these
    base_bytes: float  # bytes per base parameter held while training (estimate's memory model)
    trainable_share: float  # trainable share of the bundled model's parameters (bench/methods.py)

    def settings(self, section):
        """This method's settings from a MethodSection (None for methods without any)."""
        return getattr(section, self.name) if self.settings_cls else None

    def load_kwargs(self, settings) -> dict:
        """Extra from_pretrained arguments (QLoRA's 4-bit quantisation config)."""
        fn = getattr(self.module, "load_kwargs", None)
        return fn(settings) if fn else {}

    def apply(self, model, settings, task: str = "CAUSAL_LM"):
        """Turn a base model into the model that trains; ``task`` is SEQ_CLS for a reward model
        (a score head), which only the LoRA family supports."""
        if task != "CAUSAL_LM":
            if not self.lora_family:
                raise ConfigError(f"method '{self.name}' cannot train a {task} head; use a LoRA-family method")
            return self.module.apply(model, settings, task=task)
        return self.module.apply(model, settings)


# The trainable shares were measured on the bundled model (bench/methods.py); base bytes:
# full = fp32 weights + grads + 2 Adam moments; adapters keep a frozen fp32 base (bf16 on
# GPUs); QLoRA's base is 4-bit plus its quantisation constants.
METHODS: dict[str, Method] = {m.name: m for m in [
    Method("lora", "low-rank updates on the linear layers", lora, lora.LoraSettings, "peft", can_merge=True,
           bf16_base=True, packable=True, servable=True, lora_family=True, base_bytes=4.0, trainable_share=0.0178),
    Method("dora", "LoRA on weight directions plus trained magnitudes", dora, dora.DoraSettings, "peft",
           can_merge=True, bf16_base=True, packable=True, servable=True, lora_family=True, base_bytes=4.0,
           trainable_share=0.0189),
    Method("qlora", "LoRA over a 4-bit NF4 base (bitsandbytes)", qlora, qlora.QloraSettings, "peft", can_merge=True,
           bf16_base=False, packable=True, servable=True, lora_family=True, base_bytes=0.5625,
           trainable_share=0.0178),
    Method("prefix", "trained key/value prefixes in every attention layer", prefix, prefix.PrefixSettings, "peft",
           can_merge=False, bf16_base=False, packable=False, servable=False, lora_family=False, base_bytes=4.0,
           trainable_share=0.0017),
    Method("prompt", "trained soft-prompt embeddings before the input", prompt, prompt.PromptSettings, "peft",
           can_merge=False, bf16_base=False, packable=False, servable=False, lora_family=False, base_bytes=4.0,
           trainable_share=0.000086),
    Method("adapter", "bottleneck adapter layers after attention and MLP", adapter, adapter.AdapterSettings,
           "bottleneck", can_merge=False, bf16_base=True, packable=True, servable=False, lora_family=False,
           base_bytes=4.0, trainable_share=0.0321),
    Method("ia3", "learned scaling of keys, values and MLP activations", ia3, ia3.Ia3Settings, "peft",
           can_merge=True, bf16_base=True, packable=True, servable=True, lora_family=False, base_bytes=4.0,
           trainable_share=0.00043),
    Method("full", "every weight trains; best quality, most memory", full, None, "model", can_merge=True,
           bf16_base=False, packable=True, servable=False, lora_family=False, base_bytes=16.0, trainable_share=1.0),
]}


def lora_family() -> list[str]:
    return [m.name for m in METHODS.values() if m.lora_family]


def get(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(one_of("method", name, list(METHODS))) from None


def trainable_summary(model) -> dict:
    """Trainable and total parameter counts (and the share) of a model about to train."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(_numel(p) for p in model.parameters())
    return {"trainable": trainable, "total": total, "percent": round(100.0 * trainable / max(total, 1), 4)}


def _numel(p) -> int:
    # bitsandbytes packs two 4-bit weights into each uint8 element
    return p.numel() * 2 if type(p).__name__ == "Params4bit" else p.numel()


def save(method: Method, model, folder: Path) -> None:
    if method.saves == "bottleneck":
        adapter.save(model, folder)
    else:
        model.save_pretrained(folder)


def save_atomically(method: Method, model, tokenizer, target: Path) -> None:
    """Save the trained weights and tokenizer into a temp folder beside ``target``, sync them,
    then swap them in: the previous weights stay in place until the new ones are complete, and
    come back if saving fails."""
    from tunelab.io import atomic_folder

    with atomic_folder(target) as tmp:
        save(method, model, tmp)
        tokenizer.save_pretrained(tmp)


@contextmanager
def base_only(model):
    """Temporarily turn a tuned model's adapter off (PEFT or bottleneck) to get the base's outputs."""
    if adapter.has_adapters(model):
        with adapter.disabled(model):
            yield model
    else:
        with model.disable_adapter():
            yield model


def attach(base_model, folder: Path):
    """Base model + trained weights from ``folder`` (a PEFT or bottleneck adapter)."""
    if adapter.is_saved(folder):
        return adapter.load(base_model, folder)
    from peft import PeftModel

    return PeftModel.from_pretrained(base_model, str(folder))
