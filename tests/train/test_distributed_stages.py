"""The preference stages over two processes on CPU with gloo (`tunelab train --nproc-per-node 2`):
reward and DPO give the loss curve of one process with the same global batch, RLOO trains
against a reward run; each writes one run (one adapter, run.json at world size 2). The
one-process runs train in this process; the two-process runs are real launches, so slow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_jsonl
from tests.helpers import run_cli
from tests.train.test_stages import PAIRS

# As for SFT (tests/train/test_distributed.py): the trainer averages each global batch's loss
# over both processes, so the curves agree to float32 rounding; the tolerance leaves room for
# the different order of the gradient sums.
LOSS_TOLERANCE = 1e-3
# 8 training pairs, a multiple of the global batch of 4: otherwise the last batch of an epoch
# differs (one process trains a short batch; two processes complete it with rows from the
# start, as every distributed sampler does, so the two runs see different rows at that step).
# 4 steps are two epochs: one process precomputes DPO's reference log-probs, two compute them
# as they go (train/dpo.py), and the curves must still agree.
STEPS, GLOBAL_BATCH = 4, 4
COMMON = ["--max-steps", str(STEPS), "--lr", "2e-4", "--set", "train.epochs=1", "--set", "train.bf16=off",
          "--set", "train.logging_steps=1", "--set", "train.scheduler=constant", "--set", "method.lora.dropout=0"]


@pytest.fixture(autouse=True)
def one_process(monkeypatch):
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory, tiny_model) -> list[str]:
    folder = tmp_path_factory.mktemp("pairs")
    train = write_jsonl(folder / "train.jsonl", PAIRS[:8])
    val = write_jsonl(folder / "val.jsonl", PAIRS[8:])
    return ["--model", tiny_model, "--data", str(train), "--val", str(val)]


def _one_process(capsys, args: list[str], out: Path) -> Path:
    code, _, err = run_cli(capsys, "train", *args, *COMMON, "--batch-size", str(GLOBAL_BATCH), "--out", out)
    assert code == 0, err
    return out


def _two_processes(args: list[str], out: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE")}
    proc = subprocess.run([sys.executable, "-m", "tunelab", "train", *args, *COMMON,
                           "--batch-size", str(GLOBAL_BATCH // 2), "--nproc-per-node", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env={**env, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _losses(run: Path) -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def _one_run_written(proc: subprocess.CompletedProcess, run: Path) -> dict:
    """What a user sees of a two-process run: one summary printed, one adapter, run.json at world size 2."""
    assert proc.stdout.count("done:") == 1
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    assert not [p for p in (run / "adapter").iterdir() if p.is_dir()]  # the run's own adapter only, no reference
    assert [p.name for p in run.parent.iterdir() if p.name.startswith(run.name)] == [run.name]
    assert not list(run.glob("adapter*/.*tmp*")) and not list(run.glob(".*tmp*"))
    summary = json.loads((run / "run.json").read_text())
    assert summary["distributed"] == {"world_size": 2, "nodes": 1, "backend": "gloo", "mode": "ddp"}
    return summary


def _same_curve(two: Path, one: Path) -> None:
    a, b = _losses(two), _losses(one)
    assert len(a) == len(b) == STEPS
    assert all(abs(x - y) <= LOSS_TOLERANCE * max(1.0, abs(y)) for x, y in zip(a, b)), (a, b)


@pytest.mark.slow
def test_reward_over_two_processes_follows_the_one_process_curve(capsys, data, tmp_path):
    one = _one_process(capsys, ["--stage", "reward", *data], tmp_path / "one")
    two = tmp_path / "two"
    summary = _one_run_written(_two_processes(["--stage", "reward", *data], two), two)
    _same_curve(two, one)
    assert summary["steps"] == STEPS and summary["held_out"]["pairs"] == 2
    assert summary["held_out"] == json.loads((one / "run.json").read_text())["held_out"]


@pytest.mark.slow
def test_dpo_over_two_processes_follows_the_one_process_curve(capsys, data, tmp_path):
    one = _one_process(capsys, ["--stage", "dpo", *data], tmp_path / "one")
    two = tmp_path / "two"
    summary = _one_run_written(_two_processes(["--stage", "dpo", *data], two), two)
    _same_curve(two, one)
    expected = json.loads((one / "run.json").read_text())["held_out"]
    assert summary["held_out"]["pairs"] == expected["pairs"] == 2
    assert summary["held_out"]["preference_accuracy"] == pytest.approx(expected["preference_accuracy"], abs=1e-3)


@pytest.mark.slow
def test_rloo_over_two_processes_trains_against_a_reward_run(capsys, data, tmp_path):
    reward = _one_process(capsys, ["--stage", "reward", *data], tmp_path / "reward")
    run = tmp_path / "rloo"
    proc = _two_processes(["--stage", "rloo", *data, "--reward-model", str(reward), "--set", "rloo.rollout_batch=4",
                           "--set", "rloo.num_generations=2", "--set", "rloo.max_new_tokens=6",
                           "--set", "rloo.eval_prompts=2"], run)
    summary = _one_run_written(proc, run)
    assert summary["stage"] == "rloo" and summary["steps"] == STEPS
    assert summary["held_out"]["prompts"] == 2 and 0.0 <= summary["held_out"]["win_rate"] <= 1.0
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "reward" in r] == list(range(1, STEPS + 1))
