"""The base model's side of an evaluation, kept for the next evaluation that would redo it.

Every run tuned from one base and evaluated on the same rows starts with the same work: the
base model's answers, loss, general-knowledge probes and bias probes (half of `tunelab eval`).
Those results are stored under ``TUNELAB_HOME/eval-base``, one JSON file per part, named by a
hash of everything they depend on: the base model's files (every file's path, size and
modification time, or the Hub commit), the dtype, device and attention implementation, the token
ids of every prompt and reference, the generation settings, the source of the code that computes
them, and the versions of torch and transformers. A change to any of these changes the name, so
a stale result is not found; a 4-bit base is never cached (its quantisation settings live in the
run, not in the files).
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Callable

from tunelab.events import EventSink
from tunelab.io import atomic_write_json

FORMAT = 1
# the code whose behaviour the stored results depend on (decoding, scoring, probes, templates, loading)
_CODE = ("inference/generate.py", "inference/load.py", "evaluate/run.py", "evaluate/sides.py",
         "evaluate/scoring.py", "evaluate/forgetting.py", "evaluate/bias.py", "evaluate/metrics.py",
         "data/tokens.py", "models/load.py")


def base_identity(source: str, model) -> dict | None:
    """What identifies the base model behind ``model`` loaded from ``source``, or None when
    nothing reliable does (a 4-bit base; a Hub model without a known commit)."""
    if getattr(model, "is_quantized", False) or getattr(model, "is_loaded_in_4bit", False):
        return None
    folder = Path(source)
    if folder.is_dir():
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        return {"folder": str(folder.resolve()),
                "files": [[str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns] for p in files]}
    commit = getattr(getattr(model, "config", None), "_commit_hash", None)
    return {"hub": source, "commit": commit} if commit else None


def runtime(model) -> dict:
    """Where and how the model computes: device (with the GPU's name), attention implementation."""
    import torch

    device = next(model.parameters()).device
    return {"device": str(device.type),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "attention": getattr(getattr(model, "config", None), "_attn_implementation", None)}


@lru_cache(maxsize=1)
def _code_hash() -> str:
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for name in _CODE:
        digest.update(name.encode())
        digest.update((root / name).read_bytes())
    return digest.hexdigest()


def key(identity: dict, part: str, settings: dict) -> str:
    import torch
    import transformers

    blob = json.dumps({"format": FORMAT, "code": _code_hash(), "torch": torch.__version__,
                       "transformers": transformers.__version__, "base": identity, "part": part,
                       "settings": settings}, sort_keys=True, separators=(",", ":"))
    return f"{part}-{hashlib.sha256(blob.encode()).hexdigest()[:32]}"


def folder() -> Path:
    from tunelab.models.load import tunelab_home

    return tunelab_home() / "eval-base"


def get(name: str, required: tuple[str, ...] = ()) -> dict | None:
    """The stored value, or None when absent, unreadable or missing a ``required`` key (then it
    is computed again)."""
    path = folder() / f"{name}.json"
    try:
        value = json.loads(path.read_text(encoding="utf-8"))["value"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return value if isinstance(value, dict) and all(k in value for k in required) else None


def put(name: str, value: dict) -> None:
    try:
        atomic_write_json(folder() / f"{name}.json", {"value": value})
    except OSError:
        pass  # a read-only or full cache folder costs the next evaluation time, nothing else


class BaseReuse:
    """The base side's parts of one evaluation: each taken from an earlier evaluation when one
    left it, else computed and kept (with ``fresh``, computed again and kept in its place).

    ``common`` holds what every part depends on besides its own settings (dtype, device, ...);
    ``reused`` lists the parts that came from an earlier evaluation, in order."""

    def __init__(self, identity: dict, common: dict, *, fresh: bool, events: EventSink) -> None:
        self.identity, self.common, self.fresh, self.events = identity, common, fresh, events
        self.reused: list[str] = []

    def part(self, part: str, settings: dict, compute: Callable[[], dict], required: tuple[str, ...]) -> dict:
        name = key(self.identity, part, {**self.common, **settings})
        value = None if self.fresh else get(name, required)
        if value is not None:
            self.reused.append(part)
            self.events({"event": "note", "text": f"{part} (base): reused from an earlier eval"})
            return value
        value = compute()
        put(name, value)
        return value
