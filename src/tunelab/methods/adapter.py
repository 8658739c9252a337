"""Bottleneck adapters (Houlsby et al., 2019): a small down-projection, non-linearity and
up-projection added after each attention block and/or MLP, inside the residual branch.

PEFT has no such method and cannot register a new one without editing its PeftType enum,
and the `adapters` library pins transformers 4.x, so this is our own small module. It
attaches through forward hooks, so the base model's modules and weight names are untouched;
the up-projection starts at zero, so at step 0 the adapted model equals the base exactly.
Saved as ``bottleneck_config.json`` + ``bottleneck.safetensors`` (adapter weights only).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import torch
from pydantic import Field
from torch import nn

from tunelab.errors import ConfigError, ModelError
from tunelab.typed import Section

CONFIG_FILE = "bottleneck_config.json"
WEIGHTS_FILE = "bottleneck.safetensors"
ATTR = "tunelab_bottlenecks"
ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}


class AdapterSettings(Section):
    size: int = Field(64, ge=1, description="bottleneck width")
    placement: str = Field("both", pattern="^(both|attn|mlp)$", description="after attention, MLP, or both")
    activation: str = Field("gelu", pattern="^(gelu|relu|silu)$", description="non-linearity inside the bottleneck")
    attn_module: str = Field("self_attn", description="name of each layer's attention submodule")
    mlp_module: str = Field("mlp", description="name of each layer's MLP submodule")


class Bottleneck(nn.Module):
    def __init__(self, dim: int, size: int, activation: str) -> None:
        super().__init__()
        self.down = nn.Linear(dim, size)
        self.act = ACTIVATIONS[activation]()
        self.up = nn.Linear(size, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        self.enabled = True

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return hidden
        x = hidden.to(self.down.weight.dtype)
        return hidden + self.up(self.act(self.down(x))).to(hidden.dtype)


def _hook(adapter: Bottleneck):
    def hook(_module, _args, output):
        if isinstance(output, tuple):  # attention blocks return (hidden, weights, ...)
            return (adapter(output[0]), *output[1:])
        return adapter(output)

    return hook


def _targets(model, settings: AdapterSettings) -> list[tuple[str, nn.Module]]:
    suffixes = {"both": (settings.attn_module, settings.mlp_module), "attn": (settings.attn_module,),
                "mlp": (settings.mlp_module,)}[settings.placement]
    found = [(n, m) for n, m in model.named_modules() if n.rsplit(".", 1)[-1] in suffixes]
    if not found:
        raise ConfigError(f"adapter: no submodules named {' or '.join(suffixes)} in this model",
                          hint="set method.adapter.attn_module / mlp_module to this architecture's names")
    return found


def apply(model, settings: AdapterSettings):
    if hasattr(model, ATTR):
        raise ConfigError("adapter: this model already has bottleneck adapters")
    for p in model.parameters():
        p.requires_grad_(False)
    hidden = model.config.get_text_config().hidden_size
    device = next(model.parameters()).device
    adapters = nn.ModuleDict()
    for name, module in _targets(model, settings):
        adapter = Bottleneck(hidden, settings.size, settings.activation).to(device)
        adapters[name.replace(".", "__")] = adapter
        module.register_forward_hook(_hook(adapter))
    model.add_module(ATTR, adapters)
    model.tunelab_bottleneck_settings = settings
    return model


def has_adapters(model) -> bool:
    return hasattr(model, ATTR)


@contextmanager
def disabled(model):
    """Run the base model alone: every bottleneck passes its input through unchanged."""
    blocks = list(getattr(model, ATTR).values())
    for b in blocks:
        b.enabled = False
    try:
        yield model
    finally:
        for b in blocks:
            b.enabled = True


def adapter_state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous() for k, v in getattr(model, ATTR).state_dict().items()}


def save(model, folder: str | Path) -> None:
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(adapter_state(model), str(folder / WEIGHTS_FILE))
    (folder / CONFIG_FILE).write_text(json.dumps(model.tunelab_bottleneck_settings.model_dump(), indent=2))


def is_saved(folder: str | Path) -> bool:
    return (Path(folder) / CONFIG_FILE).is_file()


def load(model, folder: str | Path):
    """Attach saved bottleneck adapters to a freshly loaded base model."""
    from safetensors.torch import load_file

    folder = Path(folder)
    settings = AdapterSettings.model_validate_json((folder / CONFIG_FILE).read_text())
    apply(model, settings)
    state = load_file(str(folder / WEIGHTS_FILE))
    missing, unexpected = getattr(model, ATTR).load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelError(f"{folder}: bottleneck weights do not match this base model "
                         f"({len(missing)} missing, {len(unexpected)} unexpected)")
    return model
