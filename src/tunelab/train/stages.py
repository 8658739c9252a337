"""The training stages by name: STAGES maps each to its recipe module.

A recipe module exposes ``DATA`` (what rows it trains on: chat, pairs or prompts),
``check(cfg)`` (fails before anything is loaded or written), ``run(cfg, run_dir, events,
resume=False) -> RunResult`` and, for the preference stages, ``report(summary) -> lines`` for
train_report.md. CONTRIBUTING.md has the checklist for adding one.
"""

from __future__ import annotations

from types import ModuleType

from tunelab.config import RunConfig
from tunelab.errors import ConfigError, one_of
from tunelab.events import EventSink, no_events
from tunelab.io import atomic_write_text
from tunelab.rundir import RunDir
from tunelab.train import dpo, grpo, ppo, reward, rloo, setup, sft

STAGES: dict[str, ModuleType] = {"sft": sft, "reward": reward, "dpo": dpo, "ppo": ppo, "rloo": rloo, "grpo": grpo}
REPORT_FILE = "train_report.md"


def get(name: str) -> ModuleType:
    try:
        return STAGES[name]
    except KeyError:
        raise ConfigError(one_of("stage", name, list(STAGES))) from None


def check(cfg: RunConfig) -> None:
    """The stage's own checks: fail before anything is loaded or written."""
    get(cfg.train.stage).check(cfg)


def run(cfg: RunConfig, run_dir: RunDir, events: EventSink = no_events, resume: bool = False) -> setup.RunResult:
    """Run (or resume) the recipe of ``cfg.train.stage`` into ``run_dir``."""
    recipe = get(cfg.train.stage)
    if not resume:
        recipe.check(cfg)
    result = recipe.run(cfg, run_dir, events, resume=resume)
    if hasattr(recipe, "report"):
        setup.on_main(write_report, run_dir, run_dir.config(), result.summary, recipe.report(result.summary))
    return result


def write_report(run_dir: RunDir, cfg: RunConfig, summary: dict, lines: list[str]) -> None:
    head = [f"# {run_dir.name}: {summary['stage']} stage", "",
            f"model `{cfg.model.name}`, method `{cfg.method.name}`, {summary.get('steps')} steps in "
            f"{summary.get('train_seconds')} s", ""]
    atomic_write_text(run_dir.path / REPORT_FILE, "\n".join(head + lines) + "\n")
