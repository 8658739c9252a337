"""Guards that keep a training run safe to stop and resume: a signal ends it at a step boundary
with a checkpoint, a non-finite loss or gradient stops it before a bad weight is saved, and
running out of memory is reported as what to change instead of a traceback.

A trainer-based recipe adds ``NonFiniteGuard()`` and a ``StopOnSignal()`` to its trainer,
merges ``TRAINER_ARGS`` into its TrainingArguments, runs ``trainer.train`` inside
``with friendly_oom(), signals:`` and then calls ``raise_if_interrupted(signals, run_dir)``.
PPO's own loop (train/ppo_loop.py) uses ``SignalFlag``, ``check_finite`` and ``friendly_oom``
directly.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
from pathlib import Path
from typing import Iterator

from transformers import TrainerCallback

from tunelab.errors import RunError, TunelabError
from tunelab.rundir import RunDir

# Merged into every recipe's TrainingArguments: by default the trainer replaces a NaN/inf step
# loss by the running average, which hides divergence from the log and from NonFiniteGuard.
TRAINER_ARGS = {"logging_nan_inf_filter": False}

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(TunelabError):
    """Training stopped on SIGTERM or SIGINT after writing a checkpoint; exits 128 + the
    signal's number (143 for SIGTERM, 130 for SIGINT), as a process killed by it would."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class NonFinite(TunelabError):
    """The loss or the gradient norm became NaN or infinite: the run stopped unsaved."""

    exit_code = 1


class OutOfMemory(TunelabError):
    """The device (or the CPU's RAM) ran out of memory while training."""

    exit_code = 1


# ------------------------------------------------------------------------------- signals
class SignalFlag:
    """Catches SIGTERM and SIGINT while installed: the first one is remembered (training stops
    at the end of the step), the previous handlers come back at once so a second Ctrl-C aborts
    immediately. Installs only in the main thread, where Python delivers signals."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def install(self) -> None:
        if self._previous or threading.current_thread() is not threading.main_thread():
            return
        for sig in HANDLED_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._caught)

    def restore(self) -> None:
        previous, self._previous = self._previous, {}
        for sig, handler in previous.items():
            # None: the previous handler was not set from Python; the default is the closest
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)

    def _caught(self, signum, _frame) -> None:
        self.signum = signum
        self.restore()

    @property
    def stop_requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def __enter__(self) -> SignalFlag:
        self.install()
        return self

    def __exit__(self, *_exc) -> None:
        self.restore()


class StopOnSignal(TrainerCallback, SignalFlag):
    """TrainerCallback: on SIGTERM/SIGINT, finish the current step, save a checkpoint and stop.
    Handlers are installed when training begins (or on ``with``) and restored when it ends."""

    def __init__(self) -> None:
        SignalFlag.__init__(self)
        self.stopped_at: int | None = None
        # Set by distributed.shared_stop when several processes train: after each step, the
        # signal they all agreed on (None: none). They act on that, never on their own flag: a
        # signal often lands while a process waits in that very all-reduce, so its handler runs
        # just after the vote, and a process acting on its own flag would stop a step before
        # the others (its checkpoint never completed, the others stuck in the next step).
        self.shared = False
        self.agreed: int | None = None

    @property
    def stop_requested(self) -> bool:
        return (self.agreed if self.shared else self.signum) is not None

    def on_train_begin(self, args, state, control, **kwargs):
        self.install()

    def on_step_end(self, args, state, control, **kwargs):
        if self.stop_requested and self.stopped_at is None:
            self.stopped_at = state.global_step
            control.should_save = True
            control.should_training_stop = True
        return control

    def on_train_end(self, args, state, control, **kwargs):
        self.restore()


def raise_if_interrupted(flag: SignalFlag, run_dir: RunDir) -> None:
    """After the training loop returns: Interrupted if a signal stopped it, naming the
    checkpoint to resume from and the command that does it."""
    flag.restore()
    # several processes: a signal that came after the last step's vote did not stop the loop,
    # which ran to its end in every process alike
    if not flag.stop_requested:
        return
    raise interrupted(flag, run_dir.path, _newest_complete(run_dir))


def interrupted(flag: SignalFlag, run_path: Path | None, checkpoint: Path | None) -> Interrupted:
    """The Interrupted error for a run stopped by ``flag``'s signal, with ``checkpoint`` saved."""
    if checkpoint is None or run_path is None:
        return Interrupted(flag.signum, f"training stopped by {flag.name} before any checkpoint was written; "
                                        "start the run again")
    return Interrupted(flag.signum, f"training stopped by {flag.name}; {checkpoint.name} is saved; "
                                    f"resume with: tunelab train --resume {run_path}")


def _newest_complete(run_dir: RunDir) -> Path | None:
    try:
        return run_dir.resume_checkpoint()
    except RunError:
        return None


# ------------------------------------------------------------------------------- NaN / inf
def check_finite(step: int, **values: float | None) -> None:
    """NonFinite naming the step and the first of ``values`` (loss, grad_norm...) that is NaN or
    infinite; None values are not checked."""
    for name, value in values.items():
        if value is not None and not math.isfinite(float(value)):
            raise NonFinite(
                f"{name} became {value} at step {step}; the run stopped and nothing from this step was saved. "
                "Likely causes: a learning rate too high, fp16 overflow, or bad data rows. "
                "Try a lower train.lr (or more warmup), bf16 or fp32 instead of fp16, a lower train.max_grad_norm, "
                "and `tunelab data check` on the data")


def gradient_norm(parameters) -> float | None:
    """The total norm of the gradients of ``parameters`` (None if none has one)."""
    import torch

    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return None
    return float(torch.nn.utils.get_total_norm(grads))


class NonFiniteGuard(TrainerCallback):
    """TrainerCallback: stops training with NonFinite as soon as the gradients of a step are NaN
    or infinite — before the optimizer applies them, so the weights, every checkpoint and the
    saved adapter stay finite — or a logged loss is. Under fp16 an infinite gradient is the loss
    scaler's business (it skips the step), so only the logged losses are checked there."""

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if args.fp16 or model is None:
            return
        norm = gradient_norm(p for p in model.parameters() if p.requires_grad)
        if norm is not None:  # raising here skips the optimizer step: the weights stay finite
            check_finite(state.global_step + 1, grad_norm=norm)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        try:
            check_finite(state.global_step, loss=logs.get("loss"), eval_loss=logs.get("eval_loss"),
                         grad_norm=None if args.fp16 else logs.get("grad_norm"))
        except NonFinite:
            control.should_save = False  # the trainer saves right after logging
            raise


# ------------------------------------------------------------------------------- memory
OOM_ADVICE = ("lower train.batch_size (raise train.grad_accum to keep the effective batch), lower "
              "data.max_length, set train.gradient_checkpointing on, or use --method qlora (4-bit base, GPU)")


def out_of_memory(exc: BaseException) -> OutOfMemory | None:
    """An OutOfMemory with what to change if ``exc`` is the device or the CPU running out of
    memory, else None."""
    import torch

    if isinstance(exc, torch.OutOfMemoryError):
        return OutOfMemory(f"out of GPU memory while training; {OOM_ADVICE}")
    text = str(exc)
    cpu_markers = ("DefaultCPUAllocator", "can't allocate memory", "not enough memory", "MPS backend out of memory")
    if isinstance(exc, (RuntimeError, MemoryError)) and (isinstance(exc, MemoryError) or
                                                         any(m in text for m in cpu_markers)):
        return OutOfMemory(f"out of memory while training; {OOM_ADVICE}")
    return None


@contextlib.contextmanager
def friendly_oom() -> Iterator[None]:
    """Turn running out of memory inside the block into one OutOfMemory line."""
    try:
        yield
    except (RuntimeError, MemoryError) as exc:  # torch.OutOfMemoryError is a RuntimeError
        friendly = out_of_memory(exc)
        if friendly is None:
            raise
        raise friendly from None
