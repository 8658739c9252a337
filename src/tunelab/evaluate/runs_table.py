"""`tunelab compare`: one row per run, from its run.json and (when evaluated) eval.json."""

from __future__ import annotations

import json

from tunelab.rundir import RunDir


def rows(runs: list[RunDir]) -> list[dict]:
    """Method, size, training and evaluation numbers of each run, in the order given."""
    return [_row(run) for run in runs]


def _row(run: RunDir) -> dict:
    s = run.summary()
    eval_file = run.path / "eval.json"
    ev = json.loads(eval_file.read_text()) if eval_file.is_file() else {}
    fg, bias, of = ev.get("forgetting"), ev.get("bias"), ev.get("overfitting")
    return {
        "run": run.name, "method": s.get("method"), "trainable %": s.get("trainable", {}).get("percent"),
        "steps": s.get("steps"), "train loss": s.get("train_loss"), "val loss": s.get("eval_loss"),
        "rougeL": ev.get("tuned", {}).get("rougeL"), "exact_match": ev.get("tuned", {}).get("exact_match"),
        "QA drop": fg["delta"]["qa_accuracy_drop"] if fg else None,
        "ppl ×": fg["delta"]["prose_perplexity_ratio"] if fg else None,
        "bias amplified": bias["amplified"] if bias else None,
        "overfit": (f"from step {of['began_at_step']}" if of["flag"] else "no") if of else None,
    }
