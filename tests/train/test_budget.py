"""train.time_budget: the steps and the learning-rate schedule are fitted to the budget, and a
run whose budget is spent stops at a step boundary with a saved, loadable adapter."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from tests.conftest import MEMO_ROWS, write_jsonl
from tunelab import api
from tunelab.config import build_config, parse_duration
from tunelab.errors import ConfigError
from tunelab.train import budget


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("10m", 600), ("1h", 3600), ("1.5m", 90), ("45", 45)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds
    assert build_config(sets=[f"train.time_budget={text}"]).train.time_budget == text


def test_a_bad_duration_is_a_config_error():
    with pytest.raises(ConfigError, match="train.time_budget.*90s, 10m or 1h"):
        build_config(sets=["train.time_budget=soon"])


def test_fitted_steps_leave_room_for_evaluations_saves_and_the_margin():
    # 600 s budget, 60 s spent, 4 steps done, 2 s a step, 10 s an evaluation, 1 s a save:
    # 600 - 60 - 30 (margin) - 5 x 11 = 455 s -> 227 more steps
    assert budget.fit_steps(600, 60, 4, 10_000, 2.0, 10.0, 1.0) == 231
    assert budget.fit_steps(600, 60, 4, 100, 2.0, 10.0, 1.0) == 100  # the planned epochs fit: unchanged
    assert budget.fit_steps(60, 59, 4, 100, 2.0, 10.0, 1.0) == 4  # nothing left: stop where it is


def _cosine(total: int):
    from transformers import get_scheduler

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1e-3)
    return opt, get_scheduler("cosine", opt, num_warmup_steps=0, num_training_steps=total)


def test_the_schedule_is_rebuilt_for_the_fitted_length():
    opt, sched = _cosine(1000)
    for _ in range(10):
        opt.step()
        sched.step()
    args = SimpleNamespace(lr_scheduler_type="cosine", lr_scheduler_kwargs=None, get_warmup_steps=lambda n: 0)
    budget.refit_schedule(sched, args, 40)
    lrs = []
    for _ in range(30):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[-1] < 1e-6  # decays to zero at step 40, as a 40-step run would
    assert lrs == sorted(lrs, reverse=True)
    _, plain = _cosine(40)
    assert plain.lr_lambdas[0](25) == pytest.approx(sched.lr_lambdas[0](25))


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _loop(eval_strategy: str, max_steps: int = 1000):
    """The trainer's state, control and arguments as a callback sees them before the first step."""
    state = SimpleNamespace(global_step=0, max_steps=max_steps, eval_steps=max_steps // 4, save_steps=max_steps // 4)
    control = SimpleNamespace(should_training_stop=False, should_save=False, should_evaluate=False)
    args = SimpleNamespace(per_device_train_batch_size=8, gradient_accumulation_steps=1, eval_strategy=eval_strategy)
    return state, control, args


def test_the_callback_fits_the_run_after_timing_the_first_steps():
    clock = _Clock()
    notes = []
    cb = budget.BudgetCallback(100.0, 0.0, eval_rows=0, events=notes.append, clock=clock)
    state, control, args = _loop(eval_strategy="no")
    cb.on_train_begin(args, state, control)
    for step in range(1, 5):
        clock.now = 10.0 + (step - 1) * 2.0  # 10 s to the first step's end, then 2 s a step
        state.global_step = step
        cb.on_step_end(args, state, control)
    # after step 4 at 16 s: (100 - 16 - 5 margin) / 2 s -> 39 more steps
    assert state.max_steps == 43 and state.eval_steps == state.save_steps == 10
    assert "43 steps of 1000 planned" in notes[0]["text"]
    assert cb.summary() == {"seconds": 100.0, "planned_steps": 1000, "fitted_steps": 43, "step_seconds": 2.0,
                            "eval_seconds": 0.0}
    state.global_step, clock.now = 20, 95.0  # steps ran slower than measured: stop now
    cb.on_step_end(args, state, control)
    assert control.should_training_stop and control.should_save and state.max_steps == 20


def test_the_run_is_fitted_again_after_each_evaluation_from_every_step_timed():
    clock = _Clock()
    notes = []
    cb = budget.BudgetCallback(200.0, 0.0, eval_rows=8, events=notes.append, clock=clock)
    state, control, args = _loop(eval_strategy="steps")
    cb.on_train_begin(args, state, control)

    def step(seconds: float) -> None:
        clock.now += seconds
        state.global_step += 1
        cb.on_step_end(args, state, control)

    step(10.0)  # warm-up, left out
    for _ in range(3):
        step(4.0)  # the first steps run slow
    # at 22 s: (200 - 22 - 10 margin - 5 evaluations x 1.33 s estimated) / 4 s a step -> 40 more
    first = state.max_steps
    assert first == 44 and state.eval_steps == 11 and len(notes) == 1
    while state.global_step < 11:
        step(1.0)  # then they run faster
    clock.now += 4.0
    cb.on_evaluate(args, state, control)
    clock.now += 1.0
    cb.on_save(args, state, control)
    step(1.0)  # the next step's end fits the run again over the 11 steps timed so far
    assert cb.fitted.step_seconds == pytest.approx(20 / 11, abs=1e-3)  # 12 + 8 s of steps, evaluation left out
    assert state.max_steps > first and state.eval_steps == 11
    assert "measured over 11 steps" in notes[-1]["text"] and len(notes) == 2
    step(1.0)  # no evaluation since: no new fit
    assert len(notes) == 2


def _run_to_the_end(cb, budget_s: float, slow_steps: int, eval_s: float, save_s: float) -> tuple[float, int, int]:
    """Drive the callback as the trainer's loop does (its own step-end flow first: stop at
    max_steps, evaluate and save at the cadence and at the end): slow first steps, then 2 s
    ones. Returns (seconds at the end, steps made, the steps first fitted)."""
    clock = cb.clock
    state, control, args = _loop(eval_strategy="steps", max_steps=10_000)
    cb.on_train_begin(args, state, control)
    first_fit = None
    while not control.should_training_stop:
        clock.now += 4.0 if state.global_step < slow_steps else 2.0
        state.global_step += 1
        control.should_training_stop = state.global_step >= state.max_steps
        control.should_evaluate = state.global_step % state.eval_steps == 0 or control.should_training_stop
        cb.on_step_end(args, state, control)
        first_fit = first_fit or (cb.fitted and cb.fitted.steps)
        if control.should_evaluate:
            clock.now += eval_s
            cb.on_evaluate(args, state, control)
            clock.now += save_s
            cb.on_save(args, state, control)
        assert clock.now <= budget_s, f"over the budget at step {state.global_step}"
    return clock.now, state.global_step, first_fit


@pytest.mark.parametrize("eval_s", [1.0, 20.0])
def test_refitted_runs_use_the_budget_and_never_overrun_it(eval_s):
    cb = budget.BudgetCallback(300.0, 0.0, eval_rows=8, clock=_Clock())
    end, steps, first_fit = _run_to_the_end(cb, 300.0, slow_steps=6, eval_s=eval_s, save_s=1.0)
    assert steps > first_fit  # the later, faster steps bought more of them
    assert end > 300.0 - margin_and_a_round(eval_s)  # and little of the budget is left unused


def margin_and_a_round(eval_s: float) -> float:
    """What may stay unused: the margin, one step and one evaluation with its save."""
    return budget.margin(300.0) + 2.0 + eval_s + 1.0


def test_a_refit_down_to_the_current_step_stops_the_run_there():
    clock = _Clock()
    cb = budget.BudgetCallback(100.0, 0.0, eval_rows=0, clock=clock)
    state, control, args = _loop(eval_strategy="no")
    cb.on_train_begin(args, state, control)
    for step in range(1, 5):
        clock.now, state.global_step = 10.0 + (step - 1) * 2.0, step
        cb.on_step_end(args, state, control)
    clock.now += 60.0  # a save that took a minute: the next fit finds no room for another step
    cb.on_save(args, state, control)
    clock.now, state.global_step = clock.now + 2.0, 5
    cb.on_step_end(args, state, control)
    assert state.max_steps == 5 and control.should_training_stop and control.should_save


def test_no_fit_on_the_step_that_ends_the_run():
    cb = budget.BudgetCallback(100.0, 0.0, eval_rows=0, clock=_Clock())
    cb.fitted, cb.refit_due, cb.first_end, cb.planned = budget.Fit(10, 5, 1.0, 0.0, 0.0), True, 1.0, 1000
    state = SimpleNamespace(global_step=10, max_steps=10, eval_steps=5, save_steps=5)
    control = SimpleNamespace(should_training_stop=True, should_save=False, should_evaluate=False)
    cb.clock.now = 20.0
    cb.on_step_end(SimpleNamespace(eval_strategy="no"), state, control)
    assert state.max_steps == 10 and cb.fitted.steps == 10  # the trainer is stopping: no longer run


def test_a_spent_budget_ends_with_a_valid_adapter(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "memo.jsonl", MEMO_ROWS)
    # one second is less than the margin kept for the final save: the run stops after its first step
    cfg = build_config(overrides={"model.name": tiny_model, "data.train": str(data), "data.val": str(data)},
                       sets=["train.epochs=50", "train.batch_size=2", "train.bf16=off", "train.time_budget=1s"])
    notes = []
    run = api.train(cfg, out=tmp_path / "run", events=lambda e: notes.append(e.get("text", "")))
    summary = run.summary()
    planned = summary["time_budget"]["planned_steps"]
    assert planned == 200 and 1 <= summary["steps"] < planned
    assert (run.adapter / "adapter_config.json").is_file() and (run.adapter / "adapter_model.safetensors").is_file()
    assert any(n.startswith("time budget 1s: 200 steps planned") for n in notes)  # shown before training
    api.load(run.path)  # the adapter loads
    assert run.config().train.time_budget == "1s"
