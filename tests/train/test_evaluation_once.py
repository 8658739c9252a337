"""Held-out evaluation runs once per point in training: the end of a run reuses the evaluation
the loop already made at its last step; DPO on a short run evaluates at the end only and
computes reference log-probs up front only when pairs are seen more than once."""

from __future__ import annotations

from types import SimpleNamespace

from tunelab.config import build_config
from tunelab.train import dpo, fastpath


class _Trainer:
    def __init__(self, step: int, history: list[dict], best_at_end: bool = False, best: int | None = None) -> None:
        self.state = SimpleNamespace(global_step=step, log_history=history, best_global_step=best)
        self.args = SimpleNamespace(load_best_model_at_end=best_at_end)
        self.evaluations = 0

    def evaluate(self) -> dict:
        self.evaluations += 1
        return {"eval_loss": 9.0}


def test_the_last_steps_evaluation_is_reused_not_run_again():
    trainer = _Trainer(6, [{"loss": 2.0, "step": 6}, {"eval_loss": 1.5, "step": 6}])
    assert fastpath.final_evaluation(trainer)["eval_loss"] == 1.5
    assert trainer.evaluations == 0


def test_a_run_not_evaluated_at_its_last_step_is_evaluated_once():
    trainer = _Trainer(7, [{"eval_loss": 1.5, "step": 6}, {"loss": 2.0, "step": 7}])
    assert fastpath.final_evaluation(trainer)["eval_loss"] == 9.0
    assert trainer.evaluations == 1


def test_a_restored_best_checkpoint_reuses_the_evaluation_at_its_step():
    trainer = _Trainer(8, [{"eval_loss": 1.2, "step": 4}, {"eval_loss": 1.5, "step": 8}], best_at_end=True, best=4)
    assert fastpath.final_evaluation(trainer)["eval_loss"] == 1.2
    assert trainer.evaluations == 0
    unknown = _Trainer(8, [{"eval_loss": 1.5, "step": 8}], best_at_end=True, best=None)
    assert fastpath.final_evaluation(unknown)["eval_loss"] == 9.0


def _cfg(**train):
    return build_config(overrides={"data.train": "pairs.jsonl", "train.stage": "dpo", "train.batch_size": 8,
                                   **{f"train.{k}": v for k, v in train.items()}})


def test_short_dpo_runs_evaluate_at_most_every_four_steps():
    assert dpo.eval_every(_cfg(max_steps=3), 240) == 4  # 3 steps: only the final evaluation
    assert dpo.eval_every(_cfg(max_steps=40), 240) == 10
    assert dpo.eval_every(_cfg(max_steps=3, eval_steps=1), 240) == 1  # an explicit setting wins


def test_reference_log_probs_are_precomputed_only_when_pairs_come_back():
    assert not dpo.revisits_pairs(_cfg(max_steps=3), 240)  # 24 of 240 pairs: compute as it goes
    assert dpo.revisits_pairs(_cfg(epochs=3), 240)  # each pair three times: once up front
