"""The preference stages through the CLI on the tiny model: reward model, `tunelab reward`,
DPO, PPO against the reward run, the one-command pipeline, and their errors."""

from __future__ import annotations

import json

import pytest

from tests.conftest import write_jsonl
from tests.helpers import run_cli

QUESTIONS = ["What is the capital of France?", "Which day comes after Monday?", "Is Paris in France?",
             "What time is noon?", "Name a day of the week.", "Is Rome a city?", "What is Berlin?",
             "Which comes first, AM or PM?", "What is Madrid?", "Say yes or no."]
SHORT = ["Paris.", "Tuesday.", "yes", "12 PM.", "Friday.", "yes", "A city.", "AM.", "A city.", "yes"]
PAIRS = [{"prompt": q, "chosen": a,
          "rejected": f"Well, so, um, let me think about {q.lower()} Hmm. {a} I think, maybe. Hope this helps, ok?"}
         for q, a in zip(QUESTIONS, SHORT)]
FAST = ["--set", "train.bf16=off", "--set", "method.lora.dropout=0"]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("prefs") / "pairs.jsonl", PAIRS * 2)


@pytest.fixture(scope="module")
def reward_run(tmp_path_factory, tiny_model, pairs):
    from tunelab import api
    from tunelab.config import build_config

    out = tmp_path_factory.mktemp("runs") / "rm"
    cfg = build_config(overrides={"model.name": tiny_model, "data.train": str(pairs), "train.stage": "reward",
                                  "train.max_steps": 30, "train.batch_size": 4, "train.lr": 5e-3},
                       sets=["data.val_fraction=0.25", "train.bf16=off", "method.lora.dropout=0"])
    return api.train(cfg, out=out).path


def test_reward_model_learns_the_preference(reward_run, capsys):
    out = reward_run
    summary = json.loads((out / "run.json").read_text())
    assert summary["stage"] == "reward" and summary["held_out"]["pairs"] > 0
    assert summary["held_out"]["pairwise_accuracy"] > 0.5
    assert "pairwise accuracy" in (out / "train_report.md").read_text()
    assert (out / "adapter" / "adapter_config.json").is_file() and not (out / "eval.json").exists()
    code, text, _ = run_cli(capsys, "reward", out, "--prompt", QUESTIONS[0], "--response", PAIRS[0]["chosen"],
                            "--response", PAIRS[0]["rejected"], "--json")
    scores = [r["reward"] for r in json.loads(text)]
    assert code == 0 and scores[0] > scores[1]
    code, _, err = run_cli(capsys, "chat", out, "--prompt", "hi")  # a score head does not write answers
    assert code == 2 and "is a reward model" in err


def test_serve_skips_reward_runs(tiny_model, reward_run):
    from tunelab.errors import RunError
    from tunelab.serve.engine import find_adapters

    assert find_adapters(tiny_model, {}, str(reward_run.parent)) == {}
    with pytest.raises(RunError, match="reward model"):
        find_adapters(tiny_model, {"rm": str(reward_run)}, None)


def test_pairs_all_longer_than_max_length_are_one_line(capsys, tmp_path, tiny_model, pairs):
    code, _, err = run_cli(capsys, "train", "--stage", "reward", "--model", tiny_model, "--data", pairs,
                           "--max-steps", "1", "--out", tmp_path / "rm", "--set", "data.max_length=16", *FAST)
    assert code == 2 and "pair is longer than data.max_length=16" in err and "Traceback" not in err


def test_reward_needs_a_reward_run(capsys, tmp_path, tiny_model, memo_file):
    code, _, err = run_cli(capsys, "reward", tmp_path, "--prompt", "q", "--response", "a")
    assert code == 2 and "not a run directory" in err and "Traceback" not in err
    sft = tmp_path / "sft"
    code, _, _ = run_cli(capsys, "train", "--model", tiny_model, "--data", memo_file, "--max-steps", "1",
                         "--out", sft, *FAST)
    assert code == 0
    code, _, err = run_cli(capsys, "reward", sft, "--prompt", "q", "--response", "a")
    assert code == 2 and "not a reward model" in err
    code, _, err = run_cli(capsys, "train", "--stage", "ppo", "--model", tiny_model, "--data", memo_file,
                           "--reward-model", sft, "--out", tmp_path / "ppo")
    assert code == 2 and "not a reward model" in err and not (tmp_path / "ppo").exists()


@pytest.mark.parametrize("row, kind", [
    ({"prompt": "q", "chosen": "same", "rejected": "same"}, "identical_pair"),
    ({"prompt": "q", "chosen": "a", "rejected": " "}, "empty_side"),
    ({"prompt": "", "chosen": "a", "rejected": "b"}, "missing_prompt"),
])
def test_bad_pairs_are_named_by_line(capsys, tmp_path, tiny_model, row, kind):
    bad = write_jsonl(tmp_path / "bad.jsonl", [PAIRS[0], PAIRS[1], row])
    for stage in ("reward", "dpo"):
        code, _, err = run_cli(capsys, "train", "--stage", stage, "--model", tiny_model, "--data", bad,
                               "--out", tmp_path / stage)
        assert code == 2 and f"bad.jsonl:3: {kind}" in err and not (tmp_path / stage).exists()


def test_stage_errors_are_one_line(capsys, tmp_path, tiny_model, pairs, memo_file):
    code, _, err = run_cli(capsys, "train", "--stage", "ppo", "--model", tiny_model, "--data", pairs)
    assert code == 2 and "--reward-model" in err
    code, _, err = run_cli(capsys, "train", "--stage", "dpo", "--method", "prefix", "--model", tiny_model,
                           "--data", pairs)
    assert code == 2 and "LoRA-family" in err
    code, _, err = run_cli(capsys, "train", "--stage", "reward", "--model", tiny_model, "--data", memo_file)
    assert code == 2 and "needs preference pairs" in err
    code, _, err = run_cli(capsys, "train", "--model", tiny_model, "--data", pairs)
    assert code == 2 and "--stage reward or --stage dpo" in err


def test_dpo_prefers_the_chosen_answers(capsys, tmp_path, tiny_model, pairs):
    out = tmp_path / "dpo"
    code, stdout, err = run_cli(capsys, "train", "--stage", "dpo", "--model", tiny_model, "--data", pairs,
                                "--max-steps", "12", "--batch-size", "4", "--lr", "5e-3", "--out", out,
                                "--set", "data.val_fraction=0.25", *FAST)
    assert code == 0, err
    result = json.loads((out / "run.json").read_text())["held_out"]
    assert result["preference_accuracy"] > 0.5 and result["reward_margin"] > 0
    code, answer, _ = run_cli(capsys, "chat", out, "--prompt", QUESTIONS[0], "--max-new-tokens", "4")
    assert code == 0
    chat_rows = write_jsonl(tmp_path / "qa.jsonl", [{"instruction": q, "output": a} for q, a in zip(QUESTIONS, SHORT)])
    code, _, err = run_cli(capsys, "eval", out, "--data", chat_rows, "--no-forgetting", "--no-bias")
    assert code == 0, err
    after = json.loads((out / "eval.json").read_text())  # eval.json is tunelab eval's alone
    assert "tuned" in after and "preference" not in after
    assert json.loads((out / "run.json").read_text())["held_out"] == result  # training's numbers stay put


def test_ppo_against_the_reward_run(capsys, tmp_path, tiny_model, pairs, reward_run):
    out = tmp_path / "ppo"
    code, stdout, err = run_cli(
        capsys, "train", "--stage", "ppo", "--model", tiny_model, "--data", pairs, "--reward-model", reward_run,
        "--max-steps", "3", "--lr", "1e-3", "--out", out, *FAST,
        "--set", "ppo.rollout_batch=4", "--set", "ppo.mini_batch=2", "--set", "ppo.max_new_tokens=8",
        "--set", "ppo.eval_prompts=4")
    assert code == 0, err
    summary = json.loads((out / "run.json").read_text())
    result = summary["held_out"]
    assert summary["stage"] == "ppo" and result["prompts"] == 4
    assert 0.0 <= result["win_rate"] <= 1.0 and result["against"] == "the base model"
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [1, 2, 3]
    assert all({"reward", "kl", "entropy"} <= set(s) for s in steps)
    assert (out / "adapter" / "adapter_config.json").is_file() and "win rate" in stdout


def test_rlhf_runs_the_three_stages(capsys, tmp_path, tiny_model, pairs):
    config = tmp_path / "rlhf.yaml"
    config.write_text(f"""
model: {{name: {tiny_model}}}
method: {{lora: {{dropout: 0}}}}
train: {{batch_size: 4, bf16: off}}
ppo: {{rollout_batch: 4, mini_batch: 2, max_new_tokens: 6, eval_prompts: 4}}
stages:
  sft: {{data: {pairs}, train: {{max_steps: 3, lr: 1.0e-3}}}}
  reward: {{data: {pairs}, train: {{max_steps: 3, lr: 1.0e-3}}}}
  ppo: {{data: {pairs}, train: {{max_steps: 2, lr: 1.0e-4}}}}
""")
    code, stdout, err = run_cli(capsys, "rlhf", config, "--out", tmp_path / "pipeline")
    assert code == 0, err
    for stage in ("sft", "reward", "ppo"):
        assert (tmp_path / "pipeline" / stage / "adapter" / "adapter_config.json").is_file()
    ppo = json.loads((tmp_path / "pipeline" / "ppo" / "run.json").read_text())["held_out"]
    assert ppo["against"] == "the SFT run it started from"
    saved = json.loads((tmp_path / "pipeline" / "ppo" / "adapter" / "adapter_config.json").read_text())
    assert saved["peft_type"] == "LORA"
    assert not (tmp_path / "pipeline" / "ppo" / "adapter" / "reference").exists()
    code, _, err = run_cli(capsys, "rlhf", config, "--out", tmp_path / "pipeline")
    assert code == 2 and "not empty" in err


def test_rlhf_pipeline_can_end_with_grpo_linked_to_the_sft_and_reward_runs(tmp_path, tiny_model, pairs):
    from tunelab.train import rlhf

    config = {"model": {"name": tiny_model}, "grpo": {"rewards": [{"kind": "length", "max": 40}]},
              "stages": {"sft": str(pairs), "reward": str(pairs), "grpo": str(pairs)}}
    typed, source = rlhf.load(config)
    cfgs = rlhf.stage_configs(typed, source, tmp_path / "out")
    rlhf.check(cfgs, source)
    grpo = cfgs["grpo"]
    assert grpo.train.stage == "grpo" and grpo.policy() is grpo.grpo
    assert (grpo.grpo.reward_model, grpo.grpo.init) == (str(tmp_path / "out" / "reward"), str(tmp_path / "out" / "sft"))
    assert grpo.grpo.rewards[0].kind == "length"


def test_a_policy_started_from_an_sft_run_saves_only_its_own_adapter(capsys, tmp_path, tiny_model, pairs, reward_run,
                                                                     memo_file):
    sft = tmp_path / "sft"
    code, _, err = run_cli(capsys, "train", "--model", tiny_model, "--data", memo_file, "--max-steps", "1",
                           "--out", sft, *FAST)
    assert code == 0, err
    out = tmp_path / "rloo"
    code, _, err = run_cli(
        capsys, "train", "--stage", "rloo", "--model", tiny_model, "--data", pairs, "--reward-model", reward_run,
        "--init", sft, "--max-steps", "1", "--out", out, *FAST, "--set", "rloo.rollout_batch=4",
        "--set", "rloo.num_generations=2", "--set", "rloo.max_new_tokens=4", "--set", "rloo.eval_prompts=2")
    assert code == 0, err
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert [p.name for p in (out / "adapter").iterdir() if p.is_dir()] == []  # no copy of the starting adapter


def test_rloo_through_trl_against_the_reward_run(capsys, tmp_path, tiny_model, pairs, reward_run):
    out = tmp_path / "rloo"
    code, stdout, err = run_cli(
        capsys, "train", "--stage", "rloo", "--model", tiny_model, "--data", pairs, "--reward-model", reward_run,
        "--max-steps", "2", "--lr", "1e-3", "--out", out, *FAST, "--set", "rloo.rollout_batch=4",
        "--set", "rloo.num_generations=2", "--set", "rloo.max_new_tokens=6", "--set", "rloo.eval_prompts=4",
        "--set", "train.logging_steps=1")
    assert code == 0, err
    summary = json.loads((out / "run.json").read_text())
    assert summary["stage"] == "rloo" and 0.0 <= summary["held_out"]["win_rate"] <= 1.0
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("reward" in r and "kl" in r for r in logged)
    assert (out / "adapter" / "adapter_config.json").is_file()


def test_demo_rlhf_runs_the_shipped_pairs(tmp_path, tiny_model):
    from tunelab import api

    runs = api.demo_rlhf(tmp_path / "demo", model=tiny_model, steps=(1, 2, 1))
    assert list(runs) == ["sft", "reward", "ppo"]
    assert json.loads((runs["reward"] / "run.json").read_text())["held_out"]["pairs"] == 41
    assert json.loads((runs["ppo"] / "run.json").read_text())["held_out"]["prompts"] == 40
    assert (tmp_path / "demo" / "rlhf.yaml").is_file()


def test_the_old_rl_section_names_its_replacement(capsys, tmp_path, tiny_model, pairs):
    code, _, err = run_cli(capsys, "train", "--stage", "dpo", "--model", tiny_model, "--data", pairs,
                           "--set", "rl.beta=0.2", "--out", tmp_path / "dpo")
    assert code == 2 and "dpo (beta)" in err and not (tmp_path / "dpo").exists()
    code, _, err = run_cli(capsys, "train", "--stage", "dpo", "--model", tiny_model, "--data", pairs,
                           "--reward-model", tmp_path, "--out", tmp_path / "dpo")
    assert code == 2 and "--stage ppo, rloo or grpo" in err
