"""Overfitting from a run's metrics: validation loss rising while the train/validation gap widens."""

from __future__ import annotations


def analyse(metrics: list[dict]) -> dict:
    """Find where validation loss turned up while the gap to the train loss kept growing.

    Returns the best validation step and, when overfitting shows, the step where it began
    (the last step before validation loss started to rise with a widening gap).
    """
    evals = [(m["step"], m["eval_loss"]) for m in metrics if "eval_loss" in m]
    trains = [(m["step"], m["loss"]) for m in metrics if "loss" in m]
    if not evals:
        return {"flag": False, "reason": "no validation loss logged", "best_step": None, "began_at_step": None}

    def train_at(step: int) -> float | None:
        before = [loss for s, loss in trains if s <= step]
        return before[-1] if before else None

    best_step, best = min(evals, key=lambda e: e[1])
    began = None
    for (s0, v0), (s1, v1) in zip(evals, evals[1:]):
        t0, t1 = train_at(s0), train_at(s1)
        if t0 is None or t1 is None:
            continue
        if v1 > v0 and (v1 - t1) > (v0 - t0) and s0 >= best_step:
            began = s0
            break
    return {
        "flag": began is not None,
        "best_step": best_step,
        "best_eval_loss": round(best, 4),
        "last_eval_loss": round(evals[-1][1], 4),
        "began_at_step": began,
        "reason": (f"validation loss rose after step {began} while the train/validation gap widened"
                   if began is not None else "validation loss did not rise with a widening gap"),
    }
