"""`tunelab export`: a run's trained weights as a folder that loads elsewhere — the adapter as
trained (plain peft loads it), one merged model (plain transformers loads it), or one GGUF
file with an Ollama Modelfile (llama.cpp, Ollama, LM Studio; see inference/gguf.py)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

from tunelab import methods
from tunelab.errors import ConfigError, RunError
from tunelab.inference.load import load_run
from tunelab.io import atomic_write_text
from tunelab.rundir import RunDir

FORMATS = ("hf", "gguf")


def export_run(run: RunDir, out: Path, *, merge: bool = False, force: bool = False, fmt: str = "hf",
               quant: str = "f16") -> dict:
    """Write ``out`` through a temp folder beside it, so a failed export leaves no half folder
    and an existing ``out`` (with ``force``) is replaced only once the new one is complete.
    ``fmt="gguf"`` merges and writes ``<run>-<quant>.gguf`` and a ``Modelfile``."""
    from tunelab.inference import gguf

    method = methods.get(run.config().method.name)
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if fmt == "gguf" and quant not in gguf.QUANTS:
        raise ConfigError(f"--quant {quant!r}: expected one of {', '.join(gguf.QUANTS)}")
    if out.exists() and any(out.iterdir()) and not force:
        raise RunError(f"{out}: already exists and is not empty; choose another --out or pass --force")
    if (merge or fmt == "gguf") and not method.can_merge:
        needs = "a GGUF file holds one model, so" if fmt == "gguf" else "--merge:"
        raise ConfigError(f"{needs} method '{method.name}' cannot be merged into the base weights "
                          "(it adds tokens or layers rather than changing weights); export without --merge "
                          "to get the adapter, which loads on the base with tunelab or peft")
    weights = run.weights()
    extra: dict = {}
    with staged(out) as tmp:
        if fmt == "gguf":
            extra = _write_gguf(run, tmp, quant)
            kind = "gguf"
        elif not merge or method.saves == "model":
            shutil.copytree(weights, tmp, dirs_exist_ok=True)
            kind = "model" if method.saves == "model" else "adapter"
        else:
            loaded = load_run(run.path, "export", dequantize=True)
            merged_model(loaded.model).save_pretrained(tmp)
            loaded.tokenizer.save_pretrained(tmp)
            kind = "merged model"
    return {"run": str(run.path), "out": str(out), "method": method.name, "kind": kind, **extra}


@contextlib.contextmanager
def staged(out: Path):
    """A temp folder beside ``out`` that becomes ``out`` when the block completes (and is
    removed when it fails)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def merged_model(model):
    """The adapter folded into the base (a fully fine-tuned model is already one model)."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def _write_gguf(run: RunDir, folder: Path, quant: str) -> dict:
    from tunelab.inference import gguf

    loaded = load_run(run.path, "export", dequantize=True)
    model = merged_model(loaded.model)
    gguf.check_model(model.config)
    name = f"{run.name}-{quant}.gguf"
    written = gguf.write_gguf(model, loaded.tokenizer, folder / name, quant=quant, name=run.name)
    atomic_write_text(folder / "Modelfile", gguf.modelfile(name, loaded.tokenizer))
    return {"gguf": name, **written}
