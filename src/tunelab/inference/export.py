"""`tunelab export`: a run's trained weights as a folder that loads elsewhere — the adapter as
trained (plain peft loads it), or one merged model (plain transformers loads it)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from tunelab import methods
from tunelab.errors import ConfigError, RunError
from tunelab.inference.load import load_run
from tunelab.rundir import RunDir


def export_run(run: RunDir, out: Path, *, merge: bool = False, force: bool = False) -> dict:
    """Write ``out`` through a temp folder beside it, so a failed export leaves no half folder
    and an existing ``out`` (with ``force``) is replaced only once the new one is complete."""
    method = methods.get(run.config().method.name)
    if out.exists() and any(out.iterdir()) and not force:
        raise RunError(f"{out}: already exists and is not empty; choose another --out or pass --force")
    if merge and not method.can_merge:
        raise ConfigError(f"method '{method.name}' cannot be merged into the base weights "
                          "(it adds tokens or layers rather than changing weights); export without --merge "
                          "to get the adapter, which loads on the base with tunelab or peft")
    weights = run.weights()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if not merge or method.saves == "model":
            shutil.copytree(weights, tmp, dirs_exist_ok=True)
            kind = "model" if method.saves == "model" else "adapter"
        else:
            loaded = load_run(run.path, "export", dequantize=True)
            merged = loaded.model.merge_and_unload()
            merged.save_pretrained(tmp)
            loaded.tokenizer.save_pretrained(tmp)
            kind = "merged model"
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"run": str(run.path), "out": str(out), "method": method.name, "kind": kind}
