"""The run directory: the unit that train writes and eval, chat, export and serve read.

    <run>/config.yaml     resolved config          <run>/adapter/   PEFT adapter (or model/ for full)
         /data/           splits + data_card.json       /checkpoints/  trainer checkpoints (--resume)
         /metrics.jsonl   one object per log step       /run.json     summary (params, time, losses)
         /launch.json     processes it started on
         /eval.json, report.md
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from tunelab.errors import RunError
from tunelab.io import read_jsonl, write_jsonl_atomically


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def config_file(self) -> Path:
        return self.path / "config.yaml"

    @property
    def adapter(self) -> Path:
        return self.path / "adapter"

    @property
    def model(self) -> Path:
        return self.path / "model"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def data(self) -> Path:
        return self.path / "data"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def summary_file(self) -> Path:
        return self.path / "run.json"

    @property
    def launch_file(self) -> Path:
        """The processes the run started on (world size, backend, mode), for --resume to compare."""
        return self.path / "launch.json"

    @property
    def name(self) -> str:
        return self.path.name

    def config(self):
        from tunelab.config import RunConfig, upgrade

        return RunConfig.model_validate(upgrade(yaml.safe_load(self.config_file.read_text())))

    def summary(self) -> dict:
        return json.loads(self.summary_file.read_text()) if self.summary_file.is_file() else {}

    def weights(self) -> Path:
        """Folder holding the trained weights (adapter or whole model)."""
        if self.adapter.is_dir():
            return self.adapter
        if self.model.is_dir():
            return self.model
        raise RunError(f"{self.path}: run has no trained weights yet (no adapter/ or model/); did training finish?")

    def resume_checkpoint(self) -> Path:
        """The newest complete checkpoint under checkpoints/ (one a kill cut short is passed
        over for the one before), or RunError naming the folder."""
        found = sorted((p for p in self.checkpoints.glob("checkpoint-*") if p.is_dir() and checkpoint_step(p) >= 0),
                       key=checkpoint_step, reverse=True)
        for folder in found:
            if checkpoint_problem(folder) is None:
                return folder
        if not found:
            raise RunError(f"{self.checkpoints}: no checkpoint to resume from; start the run again without --resume")
        raise RunError(f"{self.checkpoints}: no complete checkpoint to resume from "
                       f"({found[0].name}: {checkpoint_problem(found[0])}); start the run again without --resume")

    def read_metrics(self) -> list[dict]:
        """One object per logged step; a torn last line (a run killed mid-write) is skipped."""
        return read_jsonl(self.metrics)

    def truncate_metrics(self, step: int) -> None:
        """Keep only the rows logged up to ``step`` (a checkpoint's), so the steps a resumed
        run replays are not logged twice; rewrites metrics.jsonl atomically."""
        if self.metrics.is_file():
            write_jsonl_atomically(self.metrics, [r for r in self.read_metrics() if r.get("step", 0) <= step])


# The files that mark a checkpoint as written to the end: the trainer writes trainer_state.json
# after the weights and optimizer; PPO's loop writes ppo_state.json last (train/ppo_loop.py).
CHECKPOINT_MARKERS = ("trainer_state.json", "ppo_state.json")


def checkpoint_step(folder: Path) -> int:
    """N of checkpoint-N (-1 for a folder named otherwise)."""
    tail = folder.name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def checkpoint_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot be resumed from (None: complete). Every JSON file must parse,
    every safetensors file must hold all the bytes its header names, and every torch file
    must be a readable zip archive (torch.save's format; its index sits at the end, so a
    truncated file fails)."""
    import zipfile

    from safetensors import safe_open

    if not any((folder / m).is_file() for m in CHECKPOINT_MARKERS):
        return f"no {' or '.join(CHECKPOINT_MARKERS)}"
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = file.relative_to(folder)
        try:
            if file.suffix == ".json":
                json.loads(file.read_text(encoding="utf-8"))
            elif file.suffix == ".safetensors":
                with safe_open(str(file), "pt"):
                    pass
            elif file.suffix in (".pt", ".pth", ".bin"):
                with zipfile.ZipFile(file) as archive:
                    archive.namelist()
        except Exception as exc:  # noqa: BLE001 -- any failure to read means "incomplete"
            return f"{name} is unreadable ({type(exc).__name__})"
    return None


def open_run(path: str | Path) -> RunDir:
    """A RunDir for an existing run, or RunError if ``path`` is not one."""
    p = Path(path)
    if not p.is_dir():
        raise RunError(f"{p}: no such run directory")
    if not (p / "config.yaml").is_file():
        raise RunError(f"{p}: not a run directory (no config.yaml); pass a folder written by `tunelab train`")
    return RunDir(p)
