"""GRPO recipe: group relative policy optimisation through TRL's GRPOTrainer — grpo.num_generations
answers per prompt, each answer's advantage its reward against its group's mean, the reward the
weighted sum of grpo.rewards (exact match against a field of the prompt row, a regular
expression, JSON validity, length bounds, reward-model runs; train/rewards.py). During training
the KL reference is the base with the adapter off (TRL turns the adapter off); the held-out win
rate under the same rewards is measured against the SFT run it started from, when grpo.init
names one, else against the base.

    run(cfg, run_dir, events, resume=False) -> RunResult
"""

from __future__ import annotations

import json

from tunelab.config import RunConfig
from tunelab.errors import ConfigError
from tunelab.events import EventSink, no_events
from tunelab.rundir import RunDir
from tunelab.train import policy, rewards, setup

DATA = "prompts"


def check(cfg: RunConfig) -> None:
    policy.check_policy(cfg)
    if not rewards.specs(cfg.grpo):
        raise ConfigError("--stage grpo needs rewards: grpo.rewards (kinds exact, regex, json, length, model; "
                          "e.g. --set 'grpo.rewards=[{kind: json}]') or --reward-model RUN_DIR")


def run(cfg: RunConfig, run_dir: RunDir, events: EventSink = no_events, resume: bool = False) -> setup.RunResult:
    from datasets import Dataset
    from trl import GRPOTrainer

    scoring = rewards.build(cfg.grpo)  # a wrong reward-model folder fails before the run is created
    train, val = setup.prompt_records(cfg, required=rewards.required_fields(cfg.grpo))
    ref, tokenizer, base = setup.load_base(cfg, dtype="float32")
    checkpoint = setup.resume_point(run_dir) if resume else None
    if not resume:
        cfg = setup.start_run(cfg, run_dir)
        setup.save_prompts(run_dir, [r["prompt"] for r in train], [r["prompt"] for r in val])
    model, _ = policy.policy_model(cfg, base, frozen_copy=False)
    rows = [{"prompt": r["prompt"], "fields": json.dumps(_fields(r), ensure_ascii=False)} for r in train]
    trainer = GRPOTrainer(model=model, reward_funcs=[rewards.for_trainer(r) for r in scoring],
                          args=_args(cfg, run_dir, len(train), [r.weight for r in scoring]),
                          processing_class=tokenizer, train_dataset=Dataset.from_list(rows))
    _, seconds = setup.fit(trainer, run_dir, events, resume_from=checkpoint)
    held = rewards.HeldOut(scoring, [_fields(r) for r in val])
    held_out = policy.win_rate(model, tokenizer, [r["prompt"] for r in val], held, cfg,
                               policy.starting_point(cfg, model))
    policy.drop_reference(model)
    setup.save_weights(cfg, model, tokenizer, run_dir)
    logs = [h for h in trainer.state.log_history if "reward" in h]
    return setup.finish(run_dir, {
        "model": ref.name, "method": cfg.method.name, "stage": "grpo", "trainable": setup.trainable(model),
        "train_rows": len(train), "val_rows": len(val), "steps": trainer.state.global_step,
        "train_seconds": round(seconds, 1), "rewards": [{"name": r.name, "weight": r.weight} for r in scoring],
        "first_reward": round(logs[0]["reward"], 4) if logs else None,
        "last_reward": round(logs[-1]["reward"], 4) if logs else None,
        "last_kl": round(logs[-1].get("kl", 0.0), 4) if logs else None, "held_out": held_out,
    })


def _fields(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "prompt"}


def _args(cfg: RunConfig, run_dir: RunDir, n_prompts: int, weights: list[float]):
    from trl import GRPOConfig

    g = cfg.grpo
    per_step = g.num_generations * max(1, g.rollout_batch // g.num_generations)  # answers per step
    return setup.trainer_args(
        GRPOConfig, cfg, run_dir, n_prompts * g.num_generations, False, num_generations=g.num_generations,
        max_completion_length=g.max_new_tokens, beta=g.kl_coef, temperature=g.temperature, reward_weights=weights,
        activation_checkpointing=cfg.train.gradient_checkpointing == "on", per_device_train_batch_size=per_step,
        per_device_eval_batch_size=per_step)


def report(summary: dict) -> list[str]:
    """The policy stages' report, then each reward's held-out mean for both sides."""
    lines = policy.report(summary)
    breakdown = summary["held_out"].get("rewards", {})
    if breakdown:
        lines += ["", "| reward | weight | policy | reference |", "|---|---|---|---|"]
        lines += [f"| {name} | {r['weight']} | {r['policy']} | {r['reference']} |" for name, r in breakdown.items()]
    return lines
