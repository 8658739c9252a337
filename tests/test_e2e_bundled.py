"""End to end on the real bundled SmolLM2-135M, through the CLI (a few steps, not an epoch)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import write_jsonl
from tests.helpers import run_cli
from tunelab import resources
from tunelab.data.load import read_rows

pytestmark = pytest.mark.slow


def test_bundled_model_trains_and_evaluates_through_the_cli(capsys, tmp_path):
    rows = [r.obj for r in read_rows(resources.path("demo_calendar.jsonl"))]
    train = write_jsonl(tmp_path / "train.jsonl", rows[:40])
    test = write_jsonl(tmp_path / "test.jsonl", rows[-6:])

    code, out, err = run_cli(capsys, "data", "check", train, "--json")
    assert code == 0, err
    assert json.loads(out)["tokens"]["mean"] > 50

    code, out, err = run_cli(capsys, "train", "--data", train, "--out", tmp_path / "run", "--max-steps", "6",
                             "--batch-size", "4", "--lr", "5e-4")
    assert code == 0, err
    summary = json.loads((tmp_path / "run" / "run.json").read_text())
    assert summary["steps"] == 6 and 1.0 < summary["trainable"]["percent"] < 2.0

    code, out, err = run_cli(capsys, "eval", tmp_path / "run", "--data", test, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["n"] == 6
    assert result["tuned"]["loss"] < result["base"]["loss"]  # six steps already move it toward the format

    code, out, err = run_cli(capsys, "chat", "--model", "smollm2-135m-instruct", "--prompt",
                             "What is the capital of France?", "--max-new-tokens", "12")
    assert code == 0 and "Paris" in out


def test_bundled_model_runs_every_preference_stage_through_the_cli(capsys, tmp_path):
    pairs = write_jsonl(tmp_path / "pairs.jsonl",
                        [r.obj for r in read_rows(resources.path("prefs_concise.jsonl"))][:48])
    config = tmp_path / "rlhf.yaml"
    config.write_text(f"""
train: {{batch_size: 4}}
ppo: {{rollout_batch: 4, mini_batch: 2, max_new_tokens: 12, eval_prompts: 4}}
stages:
  sft: {{data: {pairs}, train: {{max_steps: 2}}}}
  reward: {{data: {pairs}, train: {{max_steps: 3, lr: 5.0e-4}}}}
  ppo: {{data: {pairs}, train: {{max_steps: 2}}}}
""")
    code, out, err = run_cli(capsys, "rlhf", config, "--out", tmp_path / "rlhf")
    assert code == 0, err
    assert "win rate" in out and "pairwise accuracy" in out
    reward_run = tmp_path / "rlhf" / "reward"

    code, out, err = run_cli(capsys, "reward", reward_run, "--prompt", "How do I boil an egg?",
                             "--response", "Simmer it for 9 minutes.", "--json")
    assert code == 0, err
    assert isinstance(json.loads(out)[0]["reward"], float)

    for stage, extra in (("dpo", []), ("rloo", ["--reward-model", reward_run, "--init", tmp_path / "rlhf" / "sft"])):
        code, out, err = run_cli(capsys, "train", "--stage", stage, "--data", pairs, "--max-steps", "2",
                                 "--batch-size", "4", "--out", tmp_path / stage, *extra, "--set", "rloo.rollout_batch=4",
                                 "--set", "rloo.num_generations=2", "--set", "rloo.max_new_tokens=12",
                                 "--set", "rloo.eval_prompts=4")
        assert code == 0, err
        assert json.loads((tmp_path / stage / "run.json").read_text())["stage"] == stage
