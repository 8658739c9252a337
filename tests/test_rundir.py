"""Resuming picks the newest checkpoint that was written to the end; metrics survive a torn line
and are cut back to the checkpoint's step."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import save_file

from tunelab.errors import RunError
from tunelab.rundir import RunDir, checkpoint_problem


def _checkpoint(run: RunDir, step: int, marker: str = "trainer_state.json"):
    folder = run.checkpoints / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    save_file({"w": torch.arange(64, dtype=torch.float32)}, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text('{"r": 4}')
    torch.save({"state": {0: torch.zeros(3)}}, folder / "optimizer.pt")
    (folder / marker).write_text(json.dumps({"global_step": step}))
    return folder


def _truncate(path, keep: int) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(os.path.getsize(path) - keep)


@pytest.fixture
def run(tmp_path) -> RunDir:
    return RunDir(tmp_path / "run")


def test_newest_complete_checkpoint_is_picked_by_number_not_by_name(run):
    for step in (2, 10, 4):
        _checkpoint(run, step)
    assert run.resume_checkpoint().name == "checkpoint-10"


@pytest.mark.parametrize("damage", ["truncated weights", "no trainer state", "torn state", "truncated optimizer",
                                    "torn adapter config"])
def test_an_incomplete_checkpoint_is_skipped_for_the_one_before(run, damage):
    _checkpoint(run, 4)
    newest = _checkpoint(run, 8)
    if damage == "truncated weights":
        _truncate(newest / "adapter_model.safetensors", 16)
    elif damage == "no trainer state":
        (newest / "trainer_state.json").unlink()
    elif damage == "torn state":
        (newest / "trainer_state.json").write_text('{"global_step": 8, "log_hi')
    elif damage == "truncated optimizer":
        _truncate(newest / "optimizer.pt", 40)
    else:
        (newest / "adapter_config.json").write_text("")
    assert checkpoint_problem(newest) is not None
    assert run.resume_checkpoint().name == "checkpoint-4"


def test_a_ppo_checkpoint_counts_when_its_state_file_is_there(run):
    folder = _checkpoint(run, 3, marker="ppo_state.json")
    (folder / "policy").mkdir()
    save_file({"lora": torch.ones(4)}, str(folder / "policy" / "adapter_model.safetensors"))
    assert run.resume_checkpoint() == folder
    _truncate(folder / "policy" / "adapter_model.safetensors", 4)  # weights in a subfolder are checked too
    with pytest.raises(RunError, match="policy/adapter_model.safetensors is unreadable"):
        run.resume_checkpoint()


def test_no_complete_checkpoint_is_one_line_naming_the_folder(run):
    with pytest.raises(RunError) as caught:
        run.resume_checkpoint()
    assert str(run.checkpoints) in str(caught.value) and "no checkpoint" in str(caught.value)
    (_checkpoint(run, 5) / "trainer_state.json").unlink()
    (run.checkpoints / ".checkpoint-9.tmp-x").mkdir()  # a save in progress is not a checkpoint
    with pytest.raises(RunError) as caught:
        run.resume_checkpoint()
    message = str(caught.value)
    assert message.startswith(f"{run.checkpoints}: no complete checkpoint") and "checkpoint-5" in message
    assert "\n" not in message


def test_read_metrics_skips_a_torn_last_line(run):
    run.path.mkdir()
    run.metrics.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n{"step": 3, "lo')
    assert run.read_metrics() == [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]
    assert RunDir(run.path / "nothing").read_metrics() == []


def test_truncate_metrics_keeps_the_rows_up_to_the_checkpoint(run):
    run.path.mkdir()
    rows = [{"step": s, "loss": 1.0 / s} for s in range(1, 7)] + [{"step": 4, "eval_loss": 0.3}]
    run.metrics.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 7, "lo')
    run.truncate_metrics(4)
    kept = run.read_metrics()
    assert [r["step"] for r in kept] == [1, 2, 3, 4, 4]
    assert run.metrics.read_text().endswith("}\n")
    RunDir(run.path / "nothing").truncate_metrics(3)  # no metrics yet: nothing to do
    assert not (run.path / "nothing").exists()
