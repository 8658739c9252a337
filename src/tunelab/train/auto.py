"""`auto` hyperparameters: epochs, learning rate, batch size and LoRA rank/alpha chosen from the
training data, the method and the model size, before a run starts.

The rules, what they rest on and how little of it could be measured here, are in
docs/defaults.md. In brief:

- learning rate: a per-method base rate for the bundled 135M model (the rates bench/methods.py
  trains every method with; a short sweep in bench/auto_rules.py), lowered for larger models by
  (135M / params)^0.25;
- batch size: 8 rows, 4 when rows are long (activations grow with batch x length), never more
  than an eighth of the rows so that a small set still gets several steps per epoch;
- epochs: enough passes to reach about MIN_STEPS optimizer steps, between 1 and MAX_EPOCHS.
  One epoch of 300 rows was too few on a real summarisation task; since every run now ends on
  its best validation checkpoint and a time budget caps the wall time, erring towards more
  passes costs time, not quality;
- LoRA rank: 16, or 8 for very few answer tokens; alpha twice the rank.

Only values left at ``auto`` change; every explicit value is kept. The resolved values are
written to the run's config.yaml, and one line says what was chosen and why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tunelab import methods
from tunelab.config import RunConfig
from tunelab.methods.lora import UNRESOLVED_R

# Peak learning rate per method on the bundled 135M model: the rates bench/methods.py trains
# each method with and the shipped demo recipe uses (LoRA 4e-4); docs/defaults.md.
BASE_LR = {"full": 5e-5, "lora": 4e-4, "dora": 4e-4, "qlora": 4e-4, "ia3": 3e-3, "adapter": 1e-3,
           "prefix": 1e-2, "prompt": 3e-2}
REFERENCE_PARAMS = 135e6  # the bundled model the base rates were measured on
LONG_ROW_TOKENS = 256  # rows longer than this on average train 4 to a batch
MIN_STEPS = 100  # optimizer steps a run should reach before epochs stop growing
MAX_EPOCHS = 5
SMALL_ANSWER_TOKENS = 2000  # below this many answer tokens, rank 8 holds all there is to learn

# What auto means where no data statistics are known (the preference and policy stages): the
# values the toolkit used before auto existed.
UNRESOLVED = {"epochs": 3.0, "lr": 2e-4, "batch_size": 8}


@dataclass(frozen=True)
class DataStats:
    """What the rules read from the encoded training rows."""

    rows: int
    answer_tokens: int
    mean_tokens: float

    @classmethod
    def of(cls, encoded: list) -> "DataStats":
        """From tunelab.data.tokens.Encoded rows."""
        total = sum(len(e.input_ids) for e in encoded)
        return cls(len(encoded), sum(e.target_tokens for e in encoded), total / max(len(encoded), 1))


def batch_size(stats: DataStats) -> int:
    widest = 4 if stats.mean_tokens > LONG_ROW_TOKENS else 8
    return max(1, min(widest, stats.rows // 8))


def epochs(stats: DataStats, batch: int, grad_accum: int = 1) -> float:
    steps_per_epoch = max(1, math.ceil(stats.rows / (batch * grad_accum)))
    return float(min(MAX_EPOCHS, max(1, math.ceil(MIN_STEPS / steps_per_epoch))))


def learning_rate(method: str, params: float) -> float:
    scale = min(1.0, (REFERENCE_PARAMS / max(params, 1.0)) ** 0.25)
    return float(f"{BASE_LR[method] * scale:.2g}")


def rank(stats: DataStats) -> int:
    return 8 if stats.answer_tokens < SMALL_ANSWER_TOKENS else 16


def resolve(cfg: RunConfig, stats: DataStats, params: float) -> tuple[RunConfig, str]:
    """``cfg`` with every ``auto`` training value chosen for this data, method and model, and
    the one line that says what was chosen and why (empty when nothing was auto)."""
    t = cfg.train
    chosen: dict[str, object] = {}
    batch = batch_size(stats) if t.batch_size == "auto" else t.batch_size
    if t.batch_size == "auto":
        chosen["batch_size"] = batch
    if t.epochs == "auto":
        chosen["epochs"] = epochs(stats, batch, t.grad_accum)
    if t.lr == "auto":
        chosen["lr"] = learning_rate(cfg.method.name, params)
    lora = _lora_choice(cfg, stats)
    if not chosen and not lora:
        return cfg, ""
    cfg = _with(cfg, chosen, lora)
    return cfg, _reason(stats, chosen, lora)


def settle(cfg: RunConfig) -> RunConfig:
    """``cfg`` with any ``auto`` left replaced by the fixed values used where no data statistics
    are known; a config without ``auto`` comes back unchanged."""
    t = cfg.train
    chosen = {k: v for k, v in UNRESOLVED.items() if getattr(t, k) == "auto"}
    settings = methods.get(cfg.method.name).settings(cfg.method)
    lora = {}
    if settings is not None and getattr(settings, "r", None) == "auto":
        lora["r"] = UNRESOLVED_R
    if settings is not None and getattr(settings, "alpha", None) == "auto":
        lora["alpha"] = 2 * (lora.get("r") or settings.r)
    return _with(cfg, chosen, lora) if chosen or lora else cfg


def _lora_choice(cfg: RunConfig, stats: DataStats) -> dict:
    settings = methods.get(cfg.method.name).settings(cfg.method)
    if settings is None or not hasattr(settings, "r"):
        return {}
    out = {}
    if settings.r == "auto":
        out["r"] = rank(stats)
    if settings.alpha == "auto":
        out["alpha"] = 2 * out.get("r", settings.r)
    return out


def _with(cfg: RunConfig, train: dict, lora: dict) -> RunConfig:
    from tunelab.config import validate

    data = cfg.model_dump(mode="json")
    data["train"].update(train)
    if lora:
        data["method"][cfg.method.name].update(lora)
    return validate(data)


def _reason(stats: DataStats, chosen: dict, lora: dict) -> str:
    parts = []
    if "epochs" in chosen:
        parts.append(f"{chosen['epochs']:g} epoch{'s' if chosen['epochs'] != 1 else ''}")
    if "lr" in chosen:
        parts.append(f"lr {chosen['lr']:g}")
    if "batch_size" in chosen:
        parts.append(f"batch {chosen['batch_size']}")
    if "r" in lora:
        parts.append(f"r {lora['r']}")
    if "alpha" in lora:
        parts.append(f"alpha {lora['alpha']}")
    return (f"auto: {stats.rows} rows, {_short(stats.answer_tokens)} answer tokens, "
            f"{stats.mean_tokens:.0f} tokens a row -> " + ", ".join(parts))


def _short(n: int) -> str:
    return f"{n / 1000:.0f}k" if n >= 10_000 else f"{n / 1000:.1f}k" if n >= 1000 else str(n)
