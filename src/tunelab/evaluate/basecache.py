"""The base model's side of an evaluation, kept for the next evaluation that would redo it.

Every run tuned from one base and evaluated on the same rows starts with the same work: the
base model's answers, loss, general-knowledge probes and bias probes (half of `tunelab eval`).
Those results are stored under ``TUNELAB_HOME/eval-base``, one JSON file per part, named by a
hash of everything they depend on: the base weights (their files' names, sizes and modification
times, or the Hub commit), the dtype and device, the token ids of every prompt and reference,
the generation settings, and the versions of tunelab, torch and transformers. Anything else
changes the name, so a stale result is never found; a 4-bit base is never cached (its
quantisation settings live in the run, not in the files).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tunelab.io import atomic_write_json

FORMAT = 1
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".json", ".model")


def base_identity(source: str, model) -> dict | None:
    """What identifies the base weights behind ``model`` loaded from ``source``, or None when
    nothing reliable does (a 4-bit base; a Hub model without a known commit)."""
    if getattr(model, "is_quantized", False) or getattr(model, "is_loaded_in_4bit", False):
        return None
    folder = Path(source)
    if folder.is_dir():
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(_WEIGHT_SUFFIXES))
        return {"folder": str(folder.resolve()),
                "files": [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]}
    commit = getattr(getattr(model, "config", None), "_commit_hash", None)
    return {"hub": source, "commit": commit} if commit else None


def key(identity: dict, part: str, settings: dict) -> str:
    import torch
    import transformers

    from tunelab import __version__

    blob = json.dumps({"format": FORMAT, "tunelab": __version__, "torch": torch.__version__,
                       "transformers": transformers.__version__, "base": identity, "part": part,
                       "settings": settings}, sort_keys=True, separators=(",", ":"))
    return f"{part}-{hashlib.sha256(blob.encode()).hexdigest()[:32]}"


def folder() -> Path:
    from tunelab.models.load import tunelab_home

    return tunelab_home() / "eval-base"


def get(name: str) -> dict | None:
    path = folder() / f"{name}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))["value"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent, or unreadable: compute it again


def put(name: str, value: dict) -> None:
    try:
        atomic_write_json(folder() / f"{name}.json", {"value": value})
    except OSError:
        pass  # a read-only or full cache folder costs the next evaluation time, nothing else
