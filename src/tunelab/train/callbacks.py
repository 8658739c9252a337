"""Trainer callbacks: metrics.jsonl and progress events (see tunelab.events)."""

from __future__ import annotations

import time

from transformers import TrainerCallback

from tunelab.events import EventSink
from tunelab.io import append_jsonl


class MetricsCallback(TrainerCallback):
    """Appends every log entry (train loss, eval loss, lr, ...) to metrics.jsonl with its step."""

    def __init__(self, path) -> None:
        self.path = path

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and state.is_world_process_zero:
            # TRL's num_tokens sums the attention mask, which is not a token count for packed
            # batches; run.json has the real count
            logs = {k: v for k, v in logs.items() if k != "num_tokens"}
            append_jsonl(self.path, {"step": state.global_step, "epoch": round(state.epoch or 0, 4),
                                     "time": round(time.time(), 3), **logs})


class EventCallback(TrainerCallback):
    """Forwards training progress to an event sink."""

    def __init__(self, sink: EventSink) -> None:
        self.sink = sink
        self.last_loss: float | None = None
        self.last_eval: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.sink({"event": "start", "total_steps": state.max_steps, "step": state.global_step})

    def on_step_end(self, args, state, control, **kwargs):
        self.sink({"event": "step", "step": state.global_step, "total_steps": state.max_steps,
                   "loss": self.last_loss, "eval_loss": self.last_eval})

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" in logs:
            self.last_loss = float(logs["loss"])
        if "eval_loss" in logs:
            self.last_eval = float(logs["eval_loss"])
            self.sink({"event": "eval", "step": state.global_step, "eval_loss": self.last_eval})

    def on_train_end(self, args, state, control, **kwargs):
        self.sink({"event": "end", "step": state.global_step})
