"""Runs survive crashes, signals and NaNs, end to end through the recipes on the tiny model in
fp32: a run resumed from a middle checkpoint ends where an unbroken run ends, an incomplete
checkpoint is skipped, SIGTERM leaves a checkpoint and exit code 143, a NaN stops the run
before anything is saved, and DPO and PPO resume too."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import MEMO_ROWS, write_jsonl
from tests.train.test_stages import PAIRS
from tunelab import api
from tunelab.config import build_config

EXACT = ["train.bf16=off", "method.lora.dropout=0", "train.logging_steps=1", "train.scheduler=constant",
         "train.save_total_limit=10"]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "adapter" / "adapter_model.safetensors"))


def _steps(run: Path, key: str = "loss") -> list[int]:
    return [row["step"] for row in api.open_run(run).read_metrics() if key in row]


def _broken_at(run: Path, step: int, to: Path) -> Path:
    """A copy of a finished run as it was when it stopped after ``step``: later checkpoints,
    the adapter and the summary gone (metrics.jsonl keeps the later rows, as a crash leaves it)."""
    shutil.copytree(run, to)
    for checkpoint in (to / "checkpoints").glob("checkpoint-*"):
        if int(checkpoint.name.split("-")[1]) > step:
            shutil.rmtree(checkpoint)
    shutil.rmtree(to / "adapter")
    (to / "run.json").unlink()
    return to


def _assert_same_adapter(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.allclose(wa[name], wb[name], atol=1e-6, rtol=0), name


@pytest.fixture(scope="module")
def sft_run(tiny_model, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("resume")
    data = write_jsonl(folder / "memo.jsonl", MEMO_ROWS * 2)
    cfg = build_config(overrides={"model.name": tiny_model, "data.train": str(data), "train.max_steps": 8,
                                  "train.batch_size": 4, "train.lr": 1e-2},
                       sets=[*EXACT, "train.save_steps=4", "train.eval_steps=4"])
    return api.train(cfg, out=folder / "run").path


def test_resume_from_a_middle_checkpoint_ends_like_the_unbroken_run(sft_run, tmp_path):
    broken = _broken_at(sft_run, 4, tmp_path / "broken")
    api.train(resume=broken)
    _assert_same_adapter(broken, sft_run)
    assert _steps(broken) == list(range(1, 9))  # one row per logged step, none twice
    assert api.open_run(broken).summary()["steps"] == 8


@pytest.mark.parametrize("damage", ["truncated weights", "no trainer state"])
def test_an_incomplete_checkpoint_is_skipped_for_the_one_before(sft_run, tmp_path, damage):
    broken = _broken_at(sft_run, 8, tmp_path / "broken")
    last = broken / "checkpoints" / "checkpoint-8"
    if damage == "truncated weights":
        weights = last / "adapter_model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    else:
        (last / "trainer_state.json").unlink()
    assert api.open_run(broken).resume_checkpoint().name == "checkpoint-4"
    api.train(resume=broken)
    _assert_same_adapter(broken, sft_run)


def test_no_complete_checkpoint_is_one_line_naming_the_folder(sft_run, tmp_path, capsys):
    from tests.helpers import run_cli

    broken = _broken_at(sft_run, 8, tmp_path / "broken")
    for checkpoint in (broken / "checkpoints").glob("checkpoint-*"):
        (checkpoint / "trainer_state.json").unlink()
    code, _, err = run_cli(capsys, "train", "--resume", broken)
    assert code == 2 and "Traceback" not in err
    assert err.strip().startswith("error:") and "checkpoints" in err and len(err.strip().splitlines()) == 1


def test_sigterm_leaves_a_checkpoint_and_resume_completes(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "memo.jsonl", MEMO_ROWS * 4)
    run = tmp_path / "run"
    command = [sys.executable, "-m", "tunelab", "train", "--model", tiny_model, "--data", str(data),
               "--max-steps", "400", "--batch-size", "2", "--out", str(run), *[x for s in EXACT for x in ("--set", s)],
               "--set", "train.save_steps=1000"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 120
    while not ((run / "metrics.jsonl").is_file() and _steps(run)):  # training is under way
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "no training step logged within 120 s"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "tunelab train --resume" in err and "Traceback" not in err
    checkpoint = api.open_run(run).resume_checkpoint()  # complete, at the step it stopped
    stopped = int(checkpoint.name.split("-")[1])
    assert 0 < stopped < 400 and not (run / "adapter").exists()
    resumed = subprocess.run([*command[:3], "train", "--resume", str(run)], capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert api.open_run(run).summary()["steps"] == 400 and _steps(run) == list(range(1, 401))


def test_a_nan_stops_the_run_with_one_line_and_saves_nothing(tiny_model, tmp_path, monkeypatch, capsys):
    from tests.helpers import run_cli
    from tunelab.train import setup

    apply = setup.apply_method

    def poisoned(model, cfg, task="CAUSAL_LM"):
        model = apply(model, cfg, task)
        calls = {"n": 0}

        def hook(_module, _args, output):
            calls["n"] += 1
            return output * float("nan") if calls["n"] > 3 else output

        # the final norm, not the LM head: the fused loss reads the head's weight without calling it
        final_norm = next(m for name, m in model.named_modules() if name.endswith("model.norm"))
        final_norm.register_forward_hook(hook)
        return model

    monkeypatch.setattr(setup, "apply_method", poisoned)
    data = write_jsonl(tmp_path / "memo.jsonl", MEMO_ROWS)
    code, _, err = run_cli(capsys, "train", "--model", tiny_model, "--data", data, "--max-steps", "10",
                           "--batch-size", "4", "--out", tmp_path / "run", *[x for s in EXACT for x in ("--set", s)])
    assert code != 0 and "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]  # (above it: the progress display)
    assert len(errors) == 1 and err.strip().endswith(errors[0])
    assert "step" in errors[0] and "nan" in errors[0].lower()
    assert not (tmp_path / "run" / "adapter").exists()


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("pairs") / "pairs.jsonl", PAIRS * 2)


def test_dpo_resumes_from_a_middle_checkpoint(tiny_model, tmp_path, pairs_file):
    cfg = build_config(overrides={"model.name": tiny_model, "data.train": str(pairs_file), "train.stage": "dpo",
                                  "train.max_steps": 4, "train.batch_size": 4, "train.lr": 5e-3},
                       sets=[*EXACT, "train.save_steps=2", "train.eval_steps=2"])
    whole = api.train(cfg, out=tmp_path / "dpo").path
    broken = _broken_at(whole, 2, tmp_path / "broken")
    api.train(resume=broken)
    _assert_same_adapter(broken, whole)
    assert api.open_run(broken).summary()["held_out"]["pairs"] > 0


def test_ppo_resumes_from_a_middle_checkpoint(tiny_model, tmp_path, pairs_file):
    reward_cfg = build_config(overrides={"model.name": tiny_model, "data.train": str(pairs_file),
                                         "train.stage": "reward", "train.max_steps": 2, "train.batch_size": 4},
                              sets=EXACT)
    reward_run = api.train(reward_cfg, out=tmp_path / "rm").path
    cfg = build_config(overrides={"model.name": tiny_model, "data.train": str(pairs_file), "train.stage": "ppo",
                                  "train.max_steps": 4, "train.lr": 1e-3, "ppo.reward_model": str(reward_run)},
                       sets=[*EXACT, "train.save_steps=2", "ppo.rollout_batch=4", "ppo.mini_batch=2",
                             "ppo.max_new_tokens=6", "ppo.eval_prompts=2"])
    whole = api.train(cfg, out=tmp_path / "ppo").path
    assert api.open_run(whole).resume_checkpoint().name == "checkpoint-4"
    broken = _broken_at(whole, 2, tmp_path / "broken")
    api.train(resume=broken)
    _assert_same_adapter(broken, whole)
    assert _steps(broken, "reward") == [1, 2, 3, 4]
