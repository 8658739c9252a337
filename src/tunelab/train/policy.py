"""What the policy-optimisation recipes (PPO, RLOO, GRPO) share: their checks, the policy model (a
fresh LoRA adapter on the base, or the SFT run's adapter), and the held-out win rate against
the reference under the run's reward. Plain functions: each recipe calls what it needs.
"""

from __future__ import annotations

from pathlib import Path

from tunelab import methods
from tunelab.config import RunConfig
from tunelab.errors import ConfigError, RunError
from tunelab.rundir import RunDir, open_run
from tunelab.train import setup
from tunelab.train.ppo_loop import reference as as_reference


def check(cfg: RunConfig) -> None:
    """PPO's and RLOO's checks: the policy's, and a reward model to score it."""
    check_policy(cfg)
    if not cfg.policy().reward_model:
        stage = cfg.train.stage
        raise ConfigError(f"--stage {stage} needs a reward model: --reward-model RUN_DIR (train one with --stage reward)")


def check_policy(cfg: RunConfig) -> None:
    """What every policy stage needs: a LoRA-family method, prompts, a valid starting run."""
    stage, policy = cfg.train.stage, cfg.policy()
    if not methods.get(cfg.method.name).lora_family:
        raise ConfigError(f"--stage {stage} trains a LoRA-family adapter ({', '.join(methods.lora_family())}); "
                          f"method '{cfg.method.name}' is for supervised runs")
    if not cfg.data.train:
        raise ConfigError("no training data: pass --data FILE.jsonl (prompts, chat rows or preference pairs)")
    if policy.init and Path(policy.init).exists():  # (the rlhf pipeline checks before the SFT run exists)
        init_run(cfg)


def init_run(cfg: RunConfig) -> RunDir:
    """The SFT run a policy starts from, checked: same base model, a LoRA-family adapter."""
    init = open_run(cfg.policy().init)
    init_cfg = init.config()
    if init_cfg.model.name != cfg.model.name:
        raise RunError(f"{init.path}: trained on '{init_cfg.model.name}', but this run's model is '{cfg.model.name}'")
    if not methods.get(init_cfg.method.name).lora_family or not (init.adapter / "adapter_config.json").is_file():
        raise RunError(f"{init.path}: has no LoRA-family adapter to start from (method '{init_cfg.method.name}')")
    return init


def policy_model(cfg: RunConfig, base, *, frozen_copy: bool):
    """(policy, reference adapter name or None): a fresh adapter on the base (the reference is
    the base with the adapter off), or the SFT run's adapter, trainable, with (``frozen_copy``)
    a frozen copy of it named 'reference'."""
    from peft import PeftModel

    if not cfg.policy().init:
        return setup.apply_method(base, cfg), None
    init = init_run(cfg)
    model = PeftModel.from_pretrained(base, str(init.adapter), is_trainable=True)
    if not frozen_copy:
        return model, None
    model.load_adapter(str(init.adapter), adapter_name="reference", is_trainable=False)
    model.set_adapter("default")
    return model, "reference"


def starting_point(cfg: RunConfig, model) -> str | None:
    """The SFT run's adapter, loaded frozen beside the policy as 'reference', for the win rate
    (RLOO and GRPO train against the base with the adapter off, so no copy is kept before)."""
    if not cfg.policy().init:
        return None
    model.load_adapter(str(open_run(cfg.policy().init).adapter), adapter_name="reference", is_trainable=False)
    model.set_adapter("default")
    return "reference"


def drop_reference(model) -> None:
    """The frozen starting point is not part of the result: ours ("reference"), and the copy TRL's
    RLOO/GRPO trainers add as "ref" when the policy starts from a trained adapter (--init), as
    its DPOTrainer does for any adapter it is given."""
    for name in ("reference", "ref"):
        if name in getattr(model, "peft_config", {}):
            model.delete_adapter(name)


def win_rate(model, tok, prompts: list[list[dict]], scorer, cfg: RunConfig, reference: str | None) -> dict:
    """Greedy answers of the policy and of its reference to held-out prompts, both scored by
    the run's reward (``scorer.score``): the share the policy wins (ties count half), mean rewards,
    the KL of the policy's sampled answers to the reference (summed over tokens, averaged over
    prompts) and, where the scorer has several rewards (``scorer.breakdown``), each one's means."""
    from tunelab.data.tokens import encode_prompt
    from tunelab.inference.generate import generate

    if not prompts:
        return {"prompts": 0}
    ids = [encode_prompt(tok, p) for p in prompts]
    n = cfg.policy().max_new_tokens
    tuned = generate(model, tok, ids, max_new_tokens=n, batch_size=len(ids))
    with as_reference(model, reference):
        before = generate(model, tok, ids, max_new_tokens=n, batch_size=len(ids))
    r_tuned, r_before = scorer.score(prompts, tuned), scorer.score(prompts, before)
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(r_tuned, r_before))
    breakdown = {"rewards": scorer.breakdown(prompts, tuned, before)} if hasattr(scorer, "breakdown") else {}
    return {
        "prompts": len(prompts),
        "against": "the SFT run it started from" if reference else "the base model",
        "win_rate": round(wins / len(prompts), 4),
        "mean_reward": round(sum(r_tuned) / len(r_tuned), 4),
        "reference_mean_reward": round(sum(r_before) / len(r_before), 4),
        "kl_to_reference": round(_sampled_kl(model, tok, ids, cfg, reference), 4),
        "samples": [{"prompt": p[-1]["content"], "policy": a, "reference": b, "policy_reward": round(ra, 3),
                     "reference_reward": round(rb, 3)}
                    for p, a, b, ra, rb in list(zip(prompts, tuned, before, r_tuned, r_before))[:3]],
        **breakdown,
    }


def _sampled_kl(model, tok, ids: list[list[int]], cfg: RunConfig, reference: str | None) -> float:
    import torch

    from tunelab.inference.generate import generate_ids
    from tunelab.train.ppo_loop import score_answers

    policy = cfg.policy()
    sampled = generate_ids(model, tok, ids, max_new_tokens=policy.max_new_tokens, batch_size=len(ids),
                           temperature=policy.temperature, seed=cfg.train.seed)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    with torch.no_grad():
        own = score_answers(model, None, ids, sampled, pad, policy.temperature)
        with as_reference(model, reference):
            ref = score_answers(model, None, ids, sampled, pad, policy.temperature)
    return float(((own.logprobs - ref.logprobs) * own.mask).sum(-1).mean())


def report(summary: dict) -> list[str]:
    held = summary["held_out"]
    lines = [f"Win rate over {held.get('against')}: **{held.get('win_rate')}** on {held.get('prompts')} held-out "
             f"prompts under the run's reward (mean reward {held.get('mean_reward')} vs "
             f"{held.get('reference_mean_reward')}); KL to the reference {held.get('kl_to_reference')} nats per answer.",
             f"Training reward went from {summary.get('first_reward')} (first logged step) to "
             f"{summary.get('last_reward')} (last step); per-step reward and KL are in metrics.jsonl.", ""]
    for s in held.get("samples", []):
        lines += [f"- **{s['prompt']}**", f"  - policy ({s['policy_reward']}): {s['policy']}",
                  f"  - reference ({s['reference_reward']}): {s['reference']}"]
    return lines
