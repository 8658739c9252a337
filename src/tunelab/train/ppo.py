"""PPO recipe: policy optimisation of a LoRA adapter against a reward run, with tunelab's own
loop (train/ppo_loop.py: TRL no longer ships PPO). The KL reference is the base with the
adapter off, or a frozen copy of the SFT run's adapter when ppo.init names one; the win rate
over that reference on held-out prompts goes to run.json.

    run(cfg, run_dir, events, resume=False) -> RunResult
"""

from __future__ import annotations

import math
import time

from tunelab.config import RunConfig
from tunelab.events import EventSink, no_events
from tunelab.io import append_jsonl
from tunelab.rundir import RunDir
from tunelab.train import policy, ppo_loop, setup
from tunelab.train.reward import RewardScorer

DATA = "prompts"
check = policy.check
report = policy.report


def run(cfg: RunConfig, run_dir: RunDir, events: EventSink = no_events, resume: bool = False) -> setup.RunResult:
    scorer = RewardScorer.from_run(cfg.ppo.reward_model)  # a wrong directory fails before the run is created
    train, val = setup.prompt_rows(cfg)
    ref, tokenizer, base = setup.load_base(cfg)
    checkpoint = setup.resume_point(run_dir) if resume else None
    if not resume:
        cfg = setup.start_run(cfg, run_dir)
        setup.save_prompts(run_dir, train, val)
    model, reference = policy.policy_model(cfg, base, frozen_copy=True)
    settings = loop_settings(cfg, len(train), run_dir, checkpoint)
    start = time.perf_counter()
    value_head, history = ppo_loop.train(model, tokenizer, train, scorer.score, settings, reference_adapter=reference,
                                         events=events, log=lambda rec: append_jsonl(run_dir.metrics, rec))
    seconds = time.perf_counter() - start
    held_out = policy.win_rate(model, tokenizer, val, scorer, cfg, reference)
    policy.drop_reference(model)
    setup.save_weights(cfg, model, tokenizer, run_dir)
    ppo_loop.save_value_head(value_head, run_dir.path / "value_head.safetensors")
    logged = [h for h in run_dir.read_metrics() if "reward" in h]
    return setup.finish(run_dir, {
        "model": ref.name, "method": cfg.method.name, "stage": "ppo", "trainable": setup.trainable(model),
        "train_rows": len(train), "val_rows": len(val), "steps": settings.steps, "train_seconds": round(seconds, 1),
        "first_reward": logged[0]["reward"] if logged else None,
        "last_reward": logged[-1]["reward"] if logged else None,
        "last_kl": logged[-1]["kl"] if logged else None, "held_out": held_out,
    })


def loop_settings(cfg: RunConfig, n_prompts: int, run_dir: RunDir, checkpoint: str | None) -> ppo_loop.PpoSettings:
    """The loop's settings from the ppo and train sections: steps from train.max_steps, or
    epochs over the prompts in rollout batches; a checkpoint every train.save_steps (default:
    about four a run)."""
    p, t = cfg.ppo, cfg.train
    steps = t.max_steps if t.max_steps > 0 else max(1, math.ceil(t.epochs * n_prompts / p.rollout_batch))
    return ppo_loop.PpoSettings(
        steps=steps, rollout_batch=p.rollout_batch, mini_batch=p.mini_batch, ppo_epochs=p.ppo_epochs,
        max_new_tokens=p.max_new_tokens, temperature=p.temperature, lr=t.lr, clip=p.clip, vf_coef=p.vf_coef,
        kl_coef=p.kl_coef, gamma=p.gamma, lam=p.lam, max_grad_norm=t.max_grad_norm, weight_decay=t.weight_decay,
        seed=t.seed, save_steps=t.save_steps or max(1, steps // 4), checkpoint_dir=str(run_dir.checkpoints),
        resume_from=checkpoint, save_total_limit=t.save_total_limit)
