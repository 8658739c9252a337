"""The run guards on a real trainer over the tiny model: a NaN stops before anything bad is
saved, a signal stops at a step boundary with a complete checkpoint that resumes to the same
weights as an unbroken run, and out-of-memory becomes one line."""

from __future__ import annotations

import os
import signal
import threading

import pytest
import torch
from transformers import TrainerCallback

from tunelab.rundir import RunDir
from tunelab.train import guards

STEPS = 6


def _trainer(tiny_model, run: RunDir, *callbacks, save_steps: int = 100):
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32),
                           LoraConfig(r=4, target_modules="all-linear", lora_dropout=0.0))
    rows = [[(7 * i + j) % 300 + 3 for j in range(12)] for i in range(16)]
    data = Dataset.from_dict({"input_ids": rows, "labels": rows})
    args = TrainingArguments(
        output_dir=str(run.checkpoints), max_steps=STEPS, per_device_train_batch_size=4, learning_rate=1e-2,
        lr_scheduler_type="constant", logging_steps=1, save_strategy="steps", save_steps=save_steps,
        report_to="none", disable_tqdm=True, use_cpu=True, seed=0, data_seed=0, **guards.TRAINER_ARGS)
    trainer = Trainer(model=model, args=args, train_dataset=data)
    for cb in callbacks:
        trainer.add_callback(cb)
    return trainer


def _lora(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}


class _AtStep(TrainerCallback):
    def __init__(self, step: int, action) -> None:
        self.step, self.action = step, action

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            self.action()


# ------------------------------------------------------------------------------- NaN / inf
def test_a_nan_stops_the_run_before_the_optimizer_applies_it(tiny_model, tmp_path):
    run = RunDir(tmp_path / "run")
    trainer = _trainer(tiny_model, run, guards.NonFiniteGuard(), save_steps=2)
    assert trainer.args.logging_nan_inf_filter is False
    calls = {"n": 0}

    def poison(_module, _inputs, output):  # the 3rd step's forward returns NaN logits
        calls["n"] += 1
        return output * float("nan") if calls["n"] == 3 else output

    trainer.model.get_output_embeddings().register_forward_hook(poison)
    with pytest.raises(guards.NonFinite) as caught:
        trainer.train()
    message = str(caught.value)
    assert "grad_norm became nan at step 3" in message and "learning rate" in message and "\n" not in message
    assert caught.value.exit_code == 1
    assert all(torch.isfinite(p).all() for p in _lora(trainer.model).values())
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["checkpoint-2"]
    assert run.resume_checkpoint().name == "checkpoint-2"


def test_a_non_finite_logged_loss_stops_and_cancels_the_save():
    from transformers import TrainerControl, TrainerState, TrainingArguments

    args = TrainingArguments(output_dir="unused", report_to="none", use_cpu=True)
    control = TrainerControl(should_save=True)
    state = TrainerState(global_step=7)
    with pytest.raises(guards.NonFinite, match="loss became inf at step 7"):
        guards.NonFiniteGuard().on_log(args, state, control, logs={"loss": float("inf"), "grad_norm": 0.5})
    assert control.should_save is False
    guards.NonFiniteGuard().on_log(args, state, TrainerControl(), logs={"loss": 1.5, "grad_norm": 0.5})


# ------------------------------------------------------------------------------- signals
def test_sigterm_stops_at_the_step_with_a_checkpoint_that_resumes_to_the_same_weights(tiny_model, tmp_path):
    unbroken = _trainer(tiny_model, RunDir(tmp_path / "unbroken"))
    unbroken.train()

    run = RunDir(tmp_path / "run")
    before = signal.getsignal(signal.SIGTERM)
    stop = guards.StopOnSignal()
    trainer = _trainer(tiny_model, run, _AtStep(3, lambda: os.kill(os.getpid(), signal.SIGTERM)), stop)
    with stop:
        trainer.train()
    assert trainer.state.global_step == 3
    assert signal.getsignal(signal.SIGTERM) == before
    with pytest.raises(guards.Interrupted) as caught:
        guards.raise_if_interrupted(stop, run)
    assert caught.value.exit_code == 143
    assert str(caught.value) == (f"training stopped by SIGTERM; checkpoint-3 is saved; "
                                 f"resume with: tunelab train --resume {run.path}")
    checkpoint = run.resume_checkpoint()
    assert checkpoint.name == "checkpoint-3"

    resumed = _trainer(tiny_model, run, guards.StopOnSignal())
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == STEPS
    expected, got = _lora(unbroken.model), _lora(resumed.model)
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)


@pytest.fixture
def ctrl_c_raises():
    """SIGINT as in a terminal (a shell's background job, a CI runner's say, starts with it ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_sigint_stops_once_then_a_second_ctrl_c_aborts(ctrl_c_raises):
    flag = guards.SignalFlag()
    with flag:
        assert signal.getsignal(signal.SIGINT) == flag._caught
        os.kill(os.getpid(), signal.SIGINT)
        assert flag.signum == signal.SIGINT
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the next one raises
    error = guards.interrupted(flag, None, None)
    assert error.exit_code == 130 and "SIGINT" in str(error) and "before any checkpoint" in str(error)


def test_no_signal_no_error_and_handlers_only_in_the_main_thread(tmp_path):
    flag = guards.SignalFlag()
    with flag:
        pass
    guards.raise_if_interrupted(flag, RunDir(tmp_path))

    installed = []

    def elsewhere():
        other = guards.SignalFlag()
        other.install()
        installed.append(bool(other._previous))

    worker = threading.Thread(target=elsewhere)
    worker.start()
    worker.join()
    assert installed == [False]


def test_processes_of_one_run_stop_on_the_vote_not_on_a_signal_caught_after_it(tmp_path):
    from transformers import TrainerControl, TrainerState

    stop = guards.StopOnSignal()
    stop.shared = True  # as distributed.shared_stop sets it
    stop.signum, stop.agreed = signal.SIGTERM, None  # the signal landed just after this step's vote
    control = stop.on_step_end(None, TrainerState(global_step=3), TrainerControl())
    assert not control.should_training_stop and stop.stopped_at is None
    stop.agreed = signal.SIGTERM  # the next step's vote carries it to every process
    control = stop.on_step_end(None, TrainerState(global_step=4), TrainerControl())
    assert control.should_training_stop and control.should_save and stop.stopped_at == 4

    late = guards.StopOnSignal()
    late.shared, late.signum = True, signal.SIGTERM  # after the last step's vote: the loop ran to its end
    guards.raise_if_interrupted(late, RunDir(tmp_path))
    with pytest.raises(guards.Interrupted):  # a stop every process agreed on is reported
        guards.raise_if_interrupted(stop, RunDir(tmp_path))


# ------------------------------------------------------------------------------- memory
def test_running_out_of_memory_is_one_line_with_what_to_change():
    with pytest.raises(guards.OutOfMemory) as caught, guards.friendly_oom():
        torch.empty(2**62, dtype=torch.uint8)  # no machine has 4 EiB: the CPU allocator refuses
    message = str(caught.value)
    assert "train.batch_size" in message and "data.max_length" in message and "gradient_checkpointing" in message
    assert "qlora" in message and "\n" not in message

    with pytest.raises(guards.OutOfMemory, match="out of GPU memory"), guards.friendly_oom():
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    with pytest.raises(RuntimeError, match="shape mismatch"), guards.friendly_oom():
        raise RuntimeError("shape mismatch")
