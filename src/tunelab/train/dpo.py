"""DPO recipe: direct preference optimisation on (prompt, chosen, rejected) pairs through TRL's
DPOTrainer, on a LoRA policy whose reference is the same model with the adapter off (no second
copy of the base in memory); held-out preference accuracy and reward margin go to run.json.

    run(cfg, run_dir, events, resume=False) -> RunResult
"""

from __future__ import annotations

from tunelab.config import RunConfig
from tunelab.events import EventSink, no_events
from tunelab.rundir import RunDir
from tunelab.train import distributed, fastpath, policy, reward, setup

DATA = "pairs"
check = reward.check  # the same needs: a LoRA-family method and a file of pairs


def run(cfg: RunConfig, run_dir: RunDir, events: EventSink = no_events, resume: bool = False) -> setup.RunResult:
    from trl import DPOConfig, DPOTrainer

    train, val = setup.pair_rows(cfg, run_dir, resume)
    ref, tokenizer, base = setup.load_base(cfg)  # bf16 where the CPU has it: the base is frozen
    checkpoint = setup.resume_point(run_dir) if resume else None
    if not resume:
        cfg = setup.start_run(cfg, run_dir)
        setup.save_pairs(run_dir, train, val)
    model = setup.apply_method(base, cfg)
    recompute = fastpath.dpo_checkpointing(cfg.train.gradient_checkpointing, setup.cuda())
    args = setup.trainer_args(DPOConfig, cfg, run_dir, len(train), bool(val), beta=cfg.dpo.beta,
                              max_length=cfg.data.max_length, activation_checkpointing=recompute,
                              eval_steps=eval_every(cfg, len(train)),
                              precompute_ref_log_probs=revisits_pairs(cfg, len(train)))
    trainer = DPOTrainer(model=model, ref_model=None, processing_class=tokenizer, args=args,
                         train_dataset=setup.conversational_pairs(train),
                         eval_dataset=setup.conversational_pairs(val) if val else None)
    loss, seconds = setup.fit(trainer, run_dir, events, resume_from=checkpoint)
    final = fastpath.final_evaluation(trainer) if val else {}
    policy.drop_reference(model)  # TRL's DPOTrainer adds a frozen "ref" copy of a fresh adapter
    setup.save_weights(cfg, model, tokenizer, run_dir)
    return setup.finish(run_dir, {
        "model": ref.name, "method": cfg.method.name, "stage": "dpo", "trainable": setup.trainable(model),
        "train_rows": len(train), "val_rows": len(val), "steps": trainer.state.global_step,
        "train_loss": round(loss, 4), "train_seconds": round(seconds, 1),
        "eval_loss": _get(final, "eval_loss"),
        "held_out": {"pairs": len(val), "preference_accuracy": _get(final, "eval_rewards/accuracies"),
                     "reward_margin": _get(final, "eval_rewards/margins")},
    })


def eval_every(cfg: RunConfig, n_train: int) -> int:
    """Steps between held-out evaluations: train.eval_steps when set, else about four times a
    run but never more often than every 4 steps. A held-out pass costs about as much as a
    training step, so evaluating every step of a short run would double it; the model as
    trained is always evaluated once at the end."""
    return cfg.train.eval_steps or max(4, setup.schedule(cfg, n_train).eval_steps)


def revisits_pairs(cfg: RunConfig, n_train: int) -> bool:
    """Whether to compute the reference log-probs (the base with the adapter off) once for all
    pairs before training: worth it when the run sees a pair more than once, since the
    reference is frozen; a run shorter than an epoch computes them as it goes instead. Over
    several processes they are always computed as it goes: TRL stores the precomputed values
    in a temporary folder of the process that wrote them when the pairs are held in memory,
    where the other processes cannot read them."""
    if distributed.world_size() > 1:
        return False
    seen = setup.schedule(cfg, n_train).total_steps * cfg.train.batch_size * cfg.train.grad_accum
    return seen > n_train


def _get(metrics: dict, key: str) -> float | None:
    return round(float(metrics[key]), 4) if key in metrics else None


def report(summary: dict) -> list[str]:
    held = summary["held_out"]
    return [f"Held-out preference accuracy: **{held['preference_accuracy']}** on {held['pairs']} pairs; "
            f"mean reward margin {held['reward_margin']}."]
