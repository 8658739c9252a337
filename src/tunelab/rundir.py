"""The run directory: the unit that train writes and eval, chat, export and serve read.

    <run>/config.yaml     resolved config          <run>/adapter/   PEFT adapter (or model/ for full)
         /data/           splits + data_card.json       /checkpoints/  trainer checkpoints (--resume)
         /metrics.jsonl   one object per log step       /run.json     summary (params, time, losses)
         /eval.json, report.md
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from tunelab.errors import RunError


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
    def name(self) -> str:
        return self.path.name

    def config(self):
        from tunelab.config import RunConfig

        return RunConfig.model_validate(yaml.safe_load(self.config_file.read_text()))

    def summary(self) -> dict:
        return json.loads(self.summary_file.read_text()) if self.summary_file.is_file() else {}

    def weights(self) -> Path:
        """Folder holding the trained weights (adapter or whole model)."""
        if self.adapter.is_dir():
            return self.adapter
        if self.model.is_dir():
            return self.model
        raise RunError(f"{self.path}: run has no trained weights yet (no adapter/ or model/); did training finish?")

    def latest_checkpoint(self) -> Path:
        found = sorted(
            (p for p in self.checkpoints.glob("checkpoint-*") if p.is_dir()),
            key=lambda p: int(re.sub(r"\D", "", p.name) or 0),
        )
        if not found:
            raise RunError(f"{self.path}: no checkpoint to resume from (checkpoints/ is empty)")
        return found[-1]

    def read_metrics(self) -> list[dict]:
        if not self.metrics.is_file():
            return []
        return [json.loads(line) for line in self.metrics.read_text().splitlines() if line.strip()]


def open_run(path: str | Path) -> RunDir:
    """A RunDir for an existing run, or RunError if ``path`` is not one."""
    p = Path(path)
    if not p.is_dir():
        raise RunError(f"{p}: no such run directory")
    if not (p / "config.yaml").is_file():
        raise RunError(f"{p}: not a run directory (no config.yaml); pass a folder written by `tunelab train`")
    return RunDir(p)
