"""Load a run directory or a base model for inference, and the one "auto" dtype rule."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from tunelab import methods
from tunelab.device import use_bf16
from tunelab.errors import RunError
from tunelab.models import templates
from tunelab.models.load import ModelRef, load_model, load_tokenizer, resolve
from tunelab.rundir import RunDir, open_run

PURPOSES = ("chat", "eval", "serve", "export", "train")
log = logging.getLogger(__name__)


def resolve_dtype(setting: str, method: str | None = None, bf16: str = "auto") -> str:
    """The dtype a base model is loaded in. ``auto``: bf16 when bf16 compute is on (``bf16``:
    auto | on | off) and the method keeps a frozen base that tolerates bf16 storage (``method``
    None means a bare base model); otherwise fp32. Decoding reads every weight per token, so
    bf16 also halves the bytes that bound its speed."""
    if setting != "auto":
        return setting
    if not use_bf16(bf16):
        return "float32"
    return "bfloat16" if method is None or methods.get(method).bf16_base else "float32"


@dataclass
class Loaded:
    """A model ready for inference: the base, plus the tuned weights when loaded from a run."""

    model: object
    tokenizer: object
    ref: ModelRef
    run: RunDir | None
    is_adapter: bool


def is_run(target: str | Path) -> bool:
    p = Path(target)
    return p.is_dir() and (p / "config.yaml").is_file()


def load_run(target: str | Path, purpose: str = "chat", dtype: str = "float32", *,
             dequantize: bool = False, device_map: str | None = None, chat_template: str | None = None) -> Loaded:
    """Load a run directory (base + trained weights) or a base model name/id/folder.

    ``purpose`` names what the model is for, so a reward run (a score head) is refused with
    the command that does use it. A QLoRA run loads its base in 4-bit as trained, or, with
    ``dequantize``, as the weights those 4-bit values stand for (what a merged export needs).
    ``device_map`` "auto" spreads the layers over every visible GPU and then CPU memory (a
    model larger than one GPU); None does so only when the model does not fit one GPU.
    A run reads with the chat template it was trained with (saved with its weights);
    ``chat_template`` replaces it (a name or FILE.jinja), with a warning when it differs.
    """
    if device_map not in (None, "auto", "cpu"):
        raise ValueError(f"device_map {device_map!r} not in (None, 'auto', 'cpu')")
    if purpose not in PURPOSES:
        raise ValueError(f"purpose {purpose!r} not in {PURPOSES}")
    p = Path(target)
    if is_run(p):
        return _load_run_dir(open_run(p), purpose, dtype, dequantize, device_map, chat_template)
    if p.is_dir() and not (p / "config.json").is_file():
        raise RunError(f"{p}: not a run directory or model folder (no config.yaml or config.json)")
    ref = resolve(str(target))
    tokenizer = load_tokenizer(ref, chat_template=chat_template)
    return Loaded(load_model(ref, dtype, device_map=device_map), tokenizer, ref, None, False)


def _load_run_dir(run: RunDir, purpose: str, dtype: str, dequantize: bool, device_map: str | None = None,
                  chat_template: str | None = None) -> Loaded:
    cfg = run.config()
    ref = resolve(cfg.model.name)
    if cfg.train.stage == "reward":
        raise RunError(f"{run.path}: is a reward model (it scores answers, it does not write them); use "
                       f"`tunelab reward {run.path} --prompt ... --response ...`")
    weights = run.weights()
    tokenizer = run_tokenizer(run, ref, cfg, chat_template)
    check_template(run, templates.current(tokenizer), purpose)
    if weights == run.adapter:
        method = methods.get(cfg.method.name)
        base = load_model(ref, dtype, cfg.model.trust_remote_code, device_map=device_map,
                          **method.load_kwargs(method.settings(cfg.method)))
        if dequantize and getattr(base, "is_quantized", False):
            import torch

            base = base.dequantize(dtype=getattr(torch, dtype))
        return Loaded(methods.attach(base, weights), tokenizer, ref, run, True)
    tuned_ref = ModelRef(ref.name, str(weights), ref.params_b, True)
    return Loaded(load_model(tuned_ref, dtype, device_map=device_map), tokenizer, ref, run, False)


def run_tokenizer(run: RunDir, ref: ModelRef, cfg, chat_template: str | None = None):
    """The tokenizer a run was trained with: the one saved beside its weights (its chat template
    and eos_token included), or the base's with the configured template for a run saved without
    one; ``chat_template`` replaces the template."""
    weights = run.weights()
    trust = cfg.model.trust_remote_code
    if saved_template(weights) is not None:
        return load_tokenizer(ModelRef(ref.name, str(weights), ref.params_b, True), trust, chat_template)
    return load_tokenizer(ref, trust, chat_template or getattr(cfg.data, "chat_template", None))


def saved_template(folder: Path) -> str | None:
    """The chat template of the tokenizer saved in ``folder`` (None: no tokenizer or no template)."""
    import json

    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    config = folder / "tokenizer_config.json"
    if not config.is_file():
        return None
    value = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
    return value.get("default") if isinstance(value, dict) else value


def check_template(run: RunDir, used: str | None, purpose: str) -> bool:
    """Warn, in one line, when ``used`` is not the chat template ``run`` was trained with: the
    model learned where turns begin and end in that template's text, and answers written after
    another one degrade. Returns whether the templates match (True when nothing is recorded)."""
    try:
        trained = saved_template(run.weights())
    except RunError:
        return True
    if trained is None or used == trained:
        return True
    name = run.summary().get("chat_template", {}).get("name") or run.config().data.model_dump().get("chat_template")
    log.warning("warning: %s was trained with chat template %s but is loaded for %s with another one; "
                "answers may degrade (use the run's own template)", run.path, name or "(its base model's)", purpose)
    return False
