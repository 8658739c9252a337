"""`train.time_budget` (`--time-budget 10m`): a run that ends within a wall time.

Before training, an estimate from the throughput measured on the reference machine
(resources/prices.json) says about how many steps will fit. During training the first steps are
timed (the very first is left out: it pays for warm-up), and so are evaluations and checkpoint
saves when they happen; from those the run's step count is fitted so that the steps, the
evaluations, the saves and the final save all end before the budget, and the learning-rate
schedule (warmup and decay) is rebuilt for the fitted length, so the run still decays to its end
instead of being cut off at a high learning rate. The fit is made again after every evaluation
and save, over all the steps timed so far: the first steps and the first evaluation run slower
than the rest (allocator and cache warm-up), and runs fitted on them alone ended 29% and 36%
before their budget on the quality benchmark. Once the evaluation cadence is set, each step is priced with its share
of the evaluations and saves to come. The budget never lengthens a run beyond its planned
epochs. Should a step take longer than measured, the run stops at the first step that would
leave too little time for its final evaluation and save.

transformers' ``max_time``-style stopping does not exist for the Trainer, and a plain stop would
leave the schedule unfinished, so this is a callback of ours.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from transformers import TrainerCallback

from tunelab.events import EventSink, no_events

PROBE_STEPS = 3  # steps timed (after the first) before the run is fitted
EVALS_PER_RUN = 4  # evaluations a fitted run makes (plus the one at its end)
FORWARD_SHARE = 1 / 3  # an evaluation step costs about the forward third of a training step


@dataclass
class Fit:
    steps: int
    eval_steps: int
    step_seconds: float
    eval_seconds: float
    save_seconds: float


def margin(budget: float) -> float:
    """Time kept back for what follows the loop (the final save, run.json): 5%, at least 2 s."""
    return max(2.0, 0.05 * budget)


def fit_steps(budget: float, elapsed: float, done: int, planned: int, step_s: float, eval_s: float,
              save_s: float, evals: int = EVALS_PER_RUN) -> int:
    """The total steps that end within ``budget``: the steps still affordable after ``elapsed``
    seconds and ``done`` steps, with ``evals`` evaluations and saves still to come; never fewer
    than ``done``, never more than ``planned``."""
    left = budget - elapsed - margin(budget) - (evals + 1) * (eval_s + save_s)
    more = math.floor(left / step_s) if step_s > 0 else planned
    return max(done, min(planned, done + max(0, more)))


def estimate_seconds_per_step(tokens_per_step: float, method: str, params: float) -> float | None:
    """Seconds per optimizer step from the reference machine's measured tokens/s for ``method``
    on the bundled model, scaled by model size; None when no measurement exists."""
    from tunelab.cost import prices

    measured = prices().get("measured", {}).get("tokens_per_second", {}).get(method)
    if not measured:
        return None
    return tokens_per_step / measured * max(params, 1.0) / 135e6


class BudgetCallback(TrainerCallback):
    """Fits a trainer's run to ``seconds`` of wall time counted from ``started``
    (time.monotonic()); see the module docstring. ``fitted`` holds the outcome for run.json."""

    def __init__(self, seconds: float, started: float, eval_rows: int, events: EventSink = no_events,
                 fixed_eval_steps: bool = False, clock=time.monotonic) -> None:
        self.seconds, self.started, self.eval_rows, self.events = seconds, started, eval_rows, events
        self.fixed_eval_steps = fixed_eval_steps
        self.clock = clock
        self.first_end: float | None = None
        self.first_step = 0
        self.last_end = started
        self.mark = started
        self.overhead = 0.0  # evaluation and save time inside the probe window
        self.eval_seconds: float | None = None
        self.save_seconds: float | None = None
        self.fitted: Fit | None = None
        self.refit_due = False  # an evaluation or save since the last fit: time the run again
        self.planned: int | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.planned = state.max_steps

    def on_step_end(self, args, state, control, lr_scheduler=None, **kwargs):
        now = self.clock()
        last_step_s, self.last_end, self.mark = now - self.last_end, now, now
        if self.first_end is None:
            self.first_end, self.first_step, self.overhead = now, state.global_step, 0.0
        elif control.should_training_stop or state.global_step >= state.max_steps:
            pass  # the run ends at this step: nothing left to fit
        elif (self.fitted is None and state.global_step - self.first_step >= PROBE_STEPS) or self.refit_due:
            self._fit(args, state, now, lr_scheduler)
        self._stop_if_out_of_time(args, state, control, now, last_step_s)

    def on_evaluate(self, args, state, control, **kwargs):
        now = self.clock()
        self.eval_seconds = now - self.mark
        self.overhead += now - self.mark
        self.mark = now
        self.refit_due = self.fitted is not None

    def on_save(self, args, state, control, **kwargs):
        now = self.clock()
        self.save_seconds = max(self.save_seconds or 0.0, now - self.mark)
        self.overhead += now - self.mark
        self.mark = now
        self.refit_due = self.fitted is not None

    def _fit(self, args, state, now: float, lr_scheduler) -> None:
        """Fit the run's length to the budget from every step timed so far (evaluations and
        saves left out); the first fit also sets the evaluation cadence, later ones keep it."""
        first, self.refit_due = self.fitted is None, False
        step_s = (now - self.first_end - self.overhead) / (state.global_step - self.first_step)
        batch = args.per_device_train_batch_size * args.gradient_accumulation_steps
        if not self.eval_rows:
            eval_s = 0.0
        elif self.eval_seconds is not None:
            eval_s = self.eval_seconds
        else:  # not evaluated yet: about the forward third of a step per batch of held-out rows
            eval_s = step_s * FORWARD_SHARE * self.eval_rows / max(batch, 1)
        save_s = self.save_seconds or 0.0
        planned, price = self.planned or state.max_steps, step_s
        if first:
            evals = EVALS_PER_RUN if self.eval_rows else 0
        else:  # the cadence is set: each step also pays its share of the evaluation and save to come
            evals, price = 0, step_s + (eval_s + save_s) / max(1, state.save_steps)
        total = fit_steps(self.seconds, now - self.started, state.global_step, planned, price, eval_s, save_s, evals)
        eval_steps = state.eval_steps if self.fixed_eval_steps or not first else max(1, total // EVALS_PER_RUN)
        before, self.fitted = state.max_steps, Fit(total, eval_steps, round(step_s, 3), round(eval_s, 2),
                                                   round(save_s, 2))
        if total != state.max_steps:
            state.max_steps = total
            state.eval_steps = state.save_steps = eval_steps
            if lr_scheduler is not None:
                refit_schedule(lr_scheduler, args, total)
        if first or total != before:
            self.events({"event": "note", "text": self.describe(state, first)})

    def _stop_if_out_of_time(self, args, state, control, now: float, last_step_s: float) -> None:
        """Stop at this step when the next one and the final evaluation and save would not fit
        (before the fit, the next step is taken to last as long as the last one)."""
        step_s = self.fitted.step_seconds if self.fitted else last_step_s
        after = (self.eval_seconds or 0.0) + (self.save_seconds or 0.0) + margin(self.seconds)
        refit_to_here = state.global_step >= state.max_steps and not control.should_training_stop
        too_late = state.global_step < state.max_steps and now - self.started + step_s + after > self.seconds
        if refit_to_here or too_late:
            state.max_steps = state.global_step
            control.should_training_stop = True
            control.should_save = True
            control.should_evaluate = args.eval_strategy != "no"

    def describe(self, state, first: bool = True) -> str:
        f = self.fitted
        spent = self.clock() - self.started
        timed = PROBE_STEPS if first else state.global_step - self.first_step
        return (f"time budget {self.seconds:g}s: {f.step_seconds:.2f} s a step measured over {timed} steps, "
                f"evaluation {f.eval_seconds:.1f} s -> {f.steps} steps of {self.planned} planned "
                f"({spent:.0f}s spent so far)")

    def summary(self) -> dict:
        out = {"seconds": self.seconds, "planned_steps": self.planned}
        if self.fitted:
            out.update(fitted_steps=self.fitted.steps, step_seconds=self.fitted.step_seconds,
                       eval_seconds=self.fitted.eval_seconds)
        return out


def refit_schedule(lr_scheduler, args, total: int) -> None:
    """Give a running LambdaLR the schedule it would have had for ``total`` steps: the same kind
    and warmup share, built by transformers on a throwaway optimizer, its factors copied in (the
    real optimizer's state and step count stay)."""
    import torch
    from transformers import get_scheduler

    if not hasattr(lr_scheduler, "lr_lambdas"):
        return
    scratch = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    fresh = get_scheduler(args.lr_scheduler_type, scratch, num_warmup_steps=args.get_warmup_steps(total),
                          num_training_steps=total, scheduler_specific_kwargs=args.lr_scheduler_kwargs or {})
    if hasattr(fresh, "lr_lambdas"):
        lr_scheduler.lr_lambdas = [fresh.lr_lambdas[0]] * len(lr_scheduler.lr_lambdas)
