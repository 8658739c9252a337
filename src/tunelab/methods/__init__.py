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
    name: str
    summary: str
    module: ModuleType  # has apply(model, settings); optionally load_kwargs(settings)
    saves: str  # "peft" | "bottleneck" | "model"
    can_merge: bool
    has_settings: bool = True

    def settings(self, section):
        """This method's settings from a MethodSection (None for methods without any)."""
        return getattr(section, self.name) if self.has_settings else None

    def load_kwargs(self, settings) -> dict:
        fn = getattr(self.module, "load_kwargs", None)
        return fn(settings) if fn else {}

    def apply(self, model, settings):
        return self.module.apply(model, settings)


METHODS: dict[str, Method] = {m.name: m for m in [
    Method("lora", "low-rank updates on the linear layers", lora, "peft", True),
    Method("dora", "LoRA on weight directions plus trained magnitudes", dora, "peft", True),
    Method("qlora", "LoRA over a 4-bit NF4 base (bitsandbytes)", qlora, "peft", True),
    Method("prefix", "trained key/value prefixes in every attention layer", prefix, "peft", False),
    Method("prompt", "trained soft-prompt embeddings before the input", prompt, "peft", False),
    Method("adapter", "bottleneck adapter layers after attention and MLP", adapter, "bottleneck", False),
    Method("ia3", "learned scaling of keys, values and MLP activations", ia3, "peft", True),
    Method("full", "every weight trains; best quality, most memory", full, "model", True, has_settings=False),
]}


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
    """Save into a temp folder beside ``target``, then swap it in: never a half-written adapter."""
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        save(method, model, tmp)
        tokenizer.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
