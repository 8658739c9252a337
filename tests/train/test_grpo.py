"""GRPO through the CLI on the tiny model (every reward kind, a reward-model run, resume), the
policy stages on every prompt format, and bad rewards or rows as one line before anything is
written."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import write_jsonl
from tests.helpers import run_cli
from tests.train.test_stages import FAST, PAIRS, QUESTIONS, SHORT

SMALL = {"grpo": ["--set", "grpo.rollout_batch=4", "--set", "grpo.num_generations=2", "--set", "grpo.max_new_tokens=6",
                  "--set", "grpo.eval_prompts=2"],
         "rloo": ["--set", "rloo.rollout_batch=4", "--set", "rloo.num_generations=2", "--set", "rloo.max_new_tokens=4",
                  "--set", "rloo.eval_prompts=2"],
         "ppo": ["--set", "ppo.rollout_batch=4", "--set", "ppo.mini_batch=2", "--set", "ppo.max_new_tokens=4",
                 "--set", "ppo.eval_prompts=2"]}
CHECKS = ("grpo.rewards=[{kind: exact, field: answer, weight: 2}, {kind: exact, field: answer, pattern: '([0-9]+)'}, "
          "{kind: regex, pattern: '[A-Z]', weight: 0.5}, {kind: json}, {kind: length, min: 1, max: 3}]")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("prompts")
    return {
        "prompt": write_jsonl(folder / "prompt.jsonl", [{"prompt": q, "answer": a} for q, a in zip(QUESTIONS, SHORT)]),
        "chat_prompt": write_jsonl(folder / "chat.jsonl", [
            {"messages": [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": q}],
             "answer": a} for q, a in zip(QUESTIONS, SHORT)]),
        "pairs": write_jsonl(folder / "pairs.jsonl", PAIRS),
    }


@pytest.fixture(scope="module")
def reward_run(tmp_path_factory, tiny_model, files):
    from tunelab import api
    from tunelab.config import build_config

    cfg = build_config(overrides={"model.name": tiny_model, "data.train": str(files["pairs"]), "train.stage": "reward",
                                  "train.max_steps": 2, "train.batch_size": 4},
                       sets=["train.bf16=off", "method.lora.dropout=0"])
    return api.train(cfg, out=tmp_path_factory.mktemp("runs") / "rm").path


def _logged(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_grpo_with_every_check_kind(capsys, tmp_path, tiny_model, files):
    out = tmp_path / "grpo"
    code, stdout, err = run_cli(capsys, "train", "--stage", "grpo", "--model", tiny_model, "--data", files["prompt"],
                                "--max-steps", "2", "--lr", "1e-3", "--out", out, *FAST, *SMALL["grpo"],
                                "--set", CHECKS, "--set", "train.logging_steps=1")
    assert code == 0, err
    summary = json.loads((out / "run.json").read_text())
    names = ["exact_answer", "exact_answer_2", "regex", "json", "length"]
    assert summary["stage"] == "grpo" and summary["steps"] == 2
    assert [r["name"] for r in summary["rewards"]] == names and summary["rewards"][0]["weight"] == 2.0
    logged = [r for r in _logged(out) if "reward" in r]
    assert [r["step"] for r in logged] == [1, 2]
    assert all(f"rewards/{name}/mean" in r for r in logged for name in names)
    held = summary["held_out"]
    assert held["prompts"] == 2 and held["against"] == "the base model" and 0.0 <= held["win_rate"] <= 1.0
    assert set(held["rewards"]) == set(names)
    assert all(0.0 <= r["policy"] <= 1.0 for r in held["rewards"].values())  # every check scores 0..1
    assert "| length | 1.0 |" in (out / "train_report.md").read_text()
    assert (out / "adapter" / "adapter_config.json").is_file() and "win rate" in stdout


# With the GRPO run above and test_stages' PPO and RLOO runs on pairs, each stage reads each format
# at least once, and each format goes through each loader path (prompt rows, chat prompts, pairs).
@pytest.mark.parametrize("stage, fmt", [("grpo", "chat_prompt"), ("grpo", "pairs"), ("rloo", "prompt"),
                                        ("ppo", "chat_prompt")])
def test_policy_stages_answer_every_prompt_format(capsys, tmp_path, tiny_model, files, reward_run, stage, fmt):
    out = tmp_path / stage
    code, _, err = run_cli(capsys, "train", "--stage", stage, "--model", tiny_model, "--data", files[fmt],
                           "--reward-model", reward_run, "--max-steps", "1", "--out", out, *FAST, *SMALL[stage])
    assert code == 0, err
    summary = json.loads((out / "run.json").read_text())
    assert summary["train_rows"] + summary["val_rows"] == 10 and summary["held_out"]["prompts"] == 2
    saved = [json.loads(line)["messages"] for line in (out / "data" / "train.jsonl").read_text().splitlines()]
    assert all(m[-1]["role"] == "user" and m[-1]["content"] in QUESTIONS for m in saved)
    if fmt == "chat_prompt":
        assert all(m[0] == {"role": "system", "content": "Answer briefly."} for m in saved)
    if stage == "grpo":  # --reward-model is one more reward, named after its kind
        assert [r["name"] for r in summary["rewards"]] == ["model"] and "model" in summary["held_out"]["rewards"]


def test_grpo_resumes_from_a_middle_checkpoint(capsys, tmp_path, tiny_model, files):
    out = tmp_path / "grpo"
    args = ["train", "--stage", "grpo", "--model", tiny_model, "--data", files["prompt"], "--max-steps", "2",
            "--out", out, *FAST, *SMALL["grpo"], "--set", "grpo.rewards=[{kind: length, max: 2}]",
            "--set", "train.save_steps=1", "--set", "train.logging_steps=1"]
    code, _, err = run_cli(capsys, *args)
    assert code == 0, err
    shutil.rmtree(out / "checkpoints" / "checkpoint-2")
    shutil.rmtree(out / "adapter")
    (out / "run.json").unlink()
    code, _, err = run_cli(capsys, "train", "--resume", out)
    assert code == 0, err
    assert [r["step"] for r in _logged(out) if "reward" in r] == [1, 2]
    assert json.loads((out / "run.json").read_text())["steps"] == 2 and (out / "adapter").is_dir()


@pytest.mark.parametrize("sets, message", [
    ([], "--stage grpo needs rewards: grpo.rewards"),
    (["--set", "grpo.rewards=[{kind: regex, pattern: '[a-'}]"], "'pattern' is not a valid regular expression"),
    (["--set", "grpo.rewards=[{kind: rouge}]"], "grpo.rewards.0.kind"),
    (["--set", "grpo.rewards=[{kind: exact}]"], "kind 'exact' needs 'field'"),
    (["--set", "grpo.rewards=[{kind: exact, field: reference}]"], "prompt.jsonl:1: missing_field: no 'reference' field"),
    (["--reward-model", "nowhere"], "nowhere"),
])
def test_bad_rewards_and_rows_are_one_line_before_anything_is_written(capsys, tmp_path, tiny_model, files, sets,
                                                                      message):
    code, _, err = run_cli(capsys, "train", "--stage", "grpo", "--model", tiny_model, "--data", files["prompt"],
                           "--out", tmp_path / "grpo", *sets)
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "grpo").exists()


def test_supervised_training_names_the_policy_stages_for_prompt_files(capsys, tmp_path, tiny_model, files):
    code, _, err = run_cli(capsys, "train", "--model", tiny_model, "--data", files["prompt"], "--out", tmp_path / "sft")
    assert code == 2 and "--stage grpo, rloo or ppo" in err and not (tmp_path / "sft").exists()
