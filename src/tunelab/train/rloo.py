"""RLOO recipe: REINFORCE leave-one-out through TRL's RLOOTrainer — rloo.num_generations
answers per prompt, each answer's baseline the mean reward of the others, the reward run as
the reward function. During training the KL reference is the base with the adapter off (TRL
turns the adapter off); the win rate is measured against the SFT run it started from, when
rloo.init names one, else against the base.

    run(cfg, run_dir, events, resume=False) -> RunResult
"""

from __future__ import annotations

from tunelab.config import RunConfig
from tunelab.events import EventSink, no_events
from tunelab.rundir import RunDir
from tunelab.train import policy, setup
from tunelab.train.reward import RewardScorer

DATA = "prompts"
check = policy.check
report = policy.report


def run(cfg: RunConfig, run_dir: RunDir, events: EventSink = no_events, resume: bool = False) -> setup.RunResult:
    from datasets import Dataset
    from trl import RLOOTrainer

    scorer = RewardScorer.from_run(cfg.rloo.reward_model)
    train, val = setup.prompt_rows(cfg)
    ref, tokenizer, base = setup.load_base(cfg, dtype="float32")
    checkpoint = setup.resume_point(run_dir) if resume else None
    if not resume:
        cfg = setup.start_run(cfg, run_dir)
        setup.save_prompts(run_dir, train, val)
    model, _ = policy.policy_model(cfg, base, frozen_copy=False)

    def reward_model(prompts, completions, **_):
        texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
        return scorer.score([list(p) for p in prompts], texts)

    trainer = RLOOTrainer(model=model, reward_funcs=reward_model, args=_args(cfg, run_dir, len(train)),
                          processing_class=tokenizer, train_dataset=Dataset.from_list([{"prompt": p} for p in train]))
    _, seconds = setup.fit(trainer, run_dir, events, resume_from=checkpoint)
    held_out = policy.win_rate(model, tokenizer, val, scorer, cfg, policy.starting_point(cfg, model))
    policy.drop_reference(model)
    setup.save_weights(cfg, model, tokenizer, run_dir)
    logs = [h for h in trainer.state.log_history if "reward" in h]
    return setup.finish(run_dir, {
        "model": ref.name, "method": cfg.method.name, "stage": "rloo", "trainable": setup.trainable(model),
        "train_rows": len(train), "val_rows": len(val), "steps": trainer.state.global_step,
        "train_seconds": round(seconds, 1),
        "first_reward": round(logs[0]["reward"], 4) if logs else None,
        "last_reward": round(logs[-1]["reward"], 4) if logs else None,
        "last_kl": round(logs[-1].get("kl", 0.0), 4) if logs else None, "held_out": held_out,
    })


def _args(cfg: RunConfig, run_dir: RunDir, n_prompts: int):
    from trl import RLOOConfig

    r = cfg.rloo
    per_step = r.num_generations * max(1, r.rollout_batch // r.num_generations)  # answers per step
    return setup.trainer_args(
        RLOOConfig, cfg, run_dir, n_prompts * r.num_generations, False, num_generations=r.num_generations,
        max_completion_length=r.max_new_tokens, beta=r.kl_coef, temperature=r.temperature,
        activation_checkpointing=cfg.train.gradient_checkpointing == "on", per_device_train_batch_size=per_step,
        per_device_eval_batch_size=per_step)

