"""What the dashboard shows of the runs folder: one row per run, one run's page, and the new
rows of a run's metrics file as they are written (the live loss curve)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tunelab.errors import RunError
from tunelab.io import read_jsonl
from tunelab.rundir import RunDir, open_run

# a run without run.json whose files changed this recently is taken to be training still
ACTIVE_SECONDS = 120
EVAL_KEYS = ("rougeL", "exact_match", "perplexity")


def run_dirs(root: Path) -> list[RunDir]:
    """Every run directly under ``root`` (a folder with config.yaml), newest first."""
    if not root.is_dir():
        return []
    found = [RunDir(p) for p in root.iterdir() if p.is_dir() and (p / "config.yaml").is_file()]
    return sorted(found, key=lambda r: _changed(r), reverse=True)


def find_run(root: Path, name: str) -> RunDir:
    """The run called ``name`` under ``root``; a name is one folder, never a path."""
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise RunError(f"no run named '{name}'")
    path = root / name
    if not (path / "config.yaml").is_file():
        raise RunError(f"no run named '{name}' in {root}")
    return open_run(path)


def _changed(run: RunDir) -> float:
    stamps = [p.stat().st_mtime for p in (run.config_file, run.metrics, run.summary_file) if p.is_file()]
    return max(stamps, default=0.0)


def status(run: RunDir, now: float | None = None) -> str:
    """succeeded (run.json written), running (files changing) or stopped (neither)."""
    if run.summary_file.is_file():
        return "succeeded"
    now = time.time() if now is None else now
    return "running" if now - _changed(run) < ACTIVE_SECONDS else "stopped"


def _config_facts(run: RunDir) -> dict:
    """Stage, method and base model from config.yaml; unreadable config: what can be said."""
    try:
        cfg = run.config()
    except Exception as exc:  # noqa: BLE001 -- a damaged config is shown as such, not a 500
        return {"stage": None, "method": None, "base": None, "config_error": f"{type(exc).__name__}"}
    return {"stage": cfg.train.stage, "method": cfg.method.name, "base": cfg.model.name}


def _json_file(path: Path) -> dict | None:
    """A run's JSON file, or None when it is missing or unreadable (a run written by a killed
    process is shown with what it has, never as a server error)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def read_eval(run: RunDir) -> dict | None:
    return _json_file(run.path / "eval.json")


def read_summary(run: RunDir) -> dict:
    return _json_file(run.summary_file) or {}


def best_val_loss(metrics: list[dict]) -> float | None:
    losses = [m["eval_loss"] for m in metrics if isinstance(m.get("eval_loss"), (int, float))]
    return round(min(losses), 4) if losses else None


def row(run: RunDir, now: float | None = None) -> dict:
    """One line of the runs list."""
    summary, metrics, ev = read_summary(run), run.read_metrics(), read_eval(run)
    tuned = (ev or {}).get("tuned", {})
    now = time.time() if now is None else now
    return {"name": run.name, "status": status(run, now), **_config_facts(run),
            "best_val_loss": best_val_loss(metrics),
            "train_loss": summary.get("train_loss", _last(metrics, "loss")),
            "steps": summary.get("steps", _last(metrics, "step")),
            "evaluated": ev is not None,
            "metrics": {k: tuned[k] for k in EVAL_KEYS if isinstance(tuned.get(k), (int, float))},
            "age_seconds": round(now - _changed(run), 1)}


def _last(metrics: list[dict], key: str):
    values = [m[key] for m in metrics if key in m]
    return values[-1] if values else None


def detail(run: RunDir) -> dict:
    """Everything a run's page shows: the list row, the curves, run.json, the data card, and
    the evaluation (``eval`` and ``report`` are None until `tunelab eval` has run)."""
    from tunelab.evaluate.report import build_sections

    ev, card = read_eval(run), _json_file(run.data / "data_card.json")
    report = None
    if ev is not None:
        try:
            report = [{"title": t, "text": b} if isinstance(b, str) else {"title": t, "rows": b}
                      for t, b in build_sections(run, ev)]
        except (KeyError, TypeError, ValueError, AttributeError):  # an eval.json of another shape: raw numbers only
            report = None
    return {**row(run), "summary": read_summary(run), "metrics_rows": run.read_metrics(), "data_card": card,
            "eval": ev, "report": report}


def metrics_rows(run: RunDir) -> list[dict]:
    """The rows of metrics.jsonl written so far (a torn last line waits for its end)."""
    return read_jsonl(run.metrics)
