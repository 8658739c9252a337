"""The preference stages as whole runs: data, model, training, saved adapter, eval.json.

- ``reward``: a reward model from preference pairs; eval.json holds its held-out pairwise accuracy.
- ``dpo``: direct preference optimisation from pairs; eval.json holds held-out preference accuracy.
- ``ppo``: policy optimisation against a reward run (train/ppo.py); eval.json holds the win rate
  of the policy's answers over the reference's on held-out prompts, under the reward model,
  and the KL to the reference.
- ``rloo``: the same with TRL's RLOOTrainer (several answers per prompt, leave-one-out baseline);
  during training its KL reference is the base model (TRL turns the adapter off), while the
  win rate is measured against the SFT run it started from, when there is one.

DPO, PPO and RLOO save a LoRA adapter in ``<run>/adapter`` like an SFT run, so chat, eval,
export and serve work on their output unchanged. A reward run's adapter carries a score head
instead of the LM head: `tunelab reward` uses it, and the generating commands refuse it.
"""

from __future__ import annotations

import math
from pathlib import Path

from tunelab import methods
from tunelab.config import RunConfig
from tunelab.data import dataset
from tunelab.data.load import write_jsonl
from tunelab.data.split import row_key, split_indices
from tunelab.errors import ConfigError, RunError
from tunelab.events import EventSink, no_events
from tunelab.io import append_jsonl, atomic_write_json, atomic_write_text
from tunelab.models.load import load_model, load_tokenizer, resolve
from tunelab.rundir import RunDir, open_run

ADAPTER_METHODS = ("lora", "dora", "qlora")


def check(cfg: RunConfig) -> None:
    """Fail before anything is loaded or written."""
    stage = cfg.train.stage
    if cfg.method.name not in ADAPTER_METHODS:
        raise ConfigError(f"--stage {stage} trains a LoRA-family adapter ({', '.join(ADAPTER_METHODS)}); "
                          f"method '{cfg.method.name}' is for supervised runs")
    if not cfg.data.train:
        raise ConfigError(f"no training data: pass --data FILE.jsonl ({'preference pairs' if stage in ('reward', 'dpo') else 'prompts'})")
    if stage in ("ppo", "rloo") and not cfg.rl.reward_model:
        raise ConfigError(f"--stage {stage} needs a reward model: --reward-model RUN_DIR (train one with --stage reward)")
    if cfg.rl.init and stage not in ("ppo", "rloo"):
        raise ConfigError("rl.init (start from an SFT run) applies to --stage ppo and rloo; reward and DPO start from the base")
    if cfg.rl.init and Path(cfg.rl.init).exists():  # (the rlhf pipeline checks before the SFT run exists)
        init_run(cfg)


def init_run(cfg: RunConfig) -> RunDir:
    """The SFT run a policy starts from, checked: same base model, a LoRA-family adapter."""
    init = open_run(cfg.rl.init)
    init_cfg = init.config()
    if init_cfg.model.name != cfg.model.name:
        raise RunError(f"{init.path}: trained on '{init_cfg.model.name}', but this run's model is '{cfg.model.name}'")
    if init_cfg.method.name not in ADAPTER_METHODS or not (init.adapter / "adapter_config.json").is_file():
        raise RunError(f"{init.path}: has no LoRA-family adapter to start from (method '{init_cfg.method.name}')")
    return init


def run(cfg: RunConfig, run_dir: RunDir, events: EventSink = no_events) -> dict:
    check(cfg)
    stage = cfg.train.stage
    scorer = None
    if stage in ("ppo", "rloo"):
        from tunelab.train.preference import RewardScorer

        scorer = RewardScorer.from_run(cfg.rl.reward_model)  # a wrong directory fails before the run is created
    if stage in ("reward", "dpo"):
        train = dataset.load_pairs(cfg.data.train)
        val = dataset.load_pairs(cfg.data.val) if cfg.data.val else []
        if not cfg.data.val:
            keys = [row_key(p["prompt"] + [{"role": "assistant", "content": p["chosen"]}]) for p in train]
            tr_idx, val_idx = split_indices(keys, [cfg.data.val_fraction], cfg.train.seed)
            train, val = [train[i] for i in tr_idx], [train[i] for i in val_idx]
    else:
        train = dataset.load_prompts(cfg.data.train)
        val = dataset.load_prompts(cfg.data.val)[:cfg.rl.eval_prompts] if cfg.data.val else []
        hold = min(cfg.rl.eval_prompts, len(train) // 5)
        if not cfg.data.val and hold:
            tr_idx, val_idx = split_indices([row_key(p) for p in train], [hold / len(train)], cfg.train.seed)
            train, val = [train[i] for i in tr_idx], [train[i] for i in val_idx]
    if run_dir.path.exists() and any(run_dir.path.iterdir()):
        raise RunError(f"{run_dir.path}: already exists and is not empty; choose another --out")
    cfg = cfg.model_copy(update={"name": run_dir.name})
    run_dir.path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir.config_file, cfg.to_yaml())
    write_jsonl(run_dir.data / "train.jsonl", train if stage in ("reward", "dpo") else [{"messages": p} for p in train])
    if val:
        write_jsonl(run_dir.data / "val.jsonl", val if stage in ("reward", "dpo") else [{"messages": p} for p in val])

    method = methods.get(cfg.method.name)
    settings = method.settings(cfg.method)
    ref = resolve(cfg.model.name)
    tok = load_tokenizer(ref, cfg.model.trust_remote_code)
    from transformers import set_seed

    set_seed(cfg.train.seed)  # adapter and score-head initialisation follow train.seed
    if stage == "reward":
        model = _with_lora(load_model(ref, "float32", cfg.model.trust_remote_code, head="reward",
                                      **method.load_kwargs(settings)), method, settings, "SEQ_CLS")
        from tunelab.train.preference import run_reward

        summary = run_reward(model, tok, train, val, cfg, run_dir, events)
        result = {"stage": "reward", "held_out_pairs": len(val), "pairwise_accuracy": summary["eval_accuracy"]}
    elif stage == "dpo":
        model = _with_lora(load_model(ref, "float32", cfg.model.trust_remote_code, **method.load_kwargs(settings)),
                           method, settings, "CAUSAL_LM")
        from tunelab.train.preference import run_dpo

        summary = run_dpo(model, tok, train, val, cfg, run_dir, events)
        result = {"stage": "dpo", "held_out_pairs": len(val), "preference_accuracy": summary["eval_accuracy"],
                  "reward_margin": summary["eval_margin"]}
    elif stage == "ppo":
        model, reference = _policy(cfg, ref, method, settings, frozen_copy=True)
        summary = _ppo(model, tok, train, scorer, cfg, run_dir, reference, events)
        result = {"stage": "ppo", **win_rate(model, tok, val, scorer, cfg, reference)}
    else:
        from tunelab.train.preference import run_rloo

        model, _ = _policy(cfg, ref, method, settings, frozen_copy=False, dtype="float32")
        summary = run_rloo(model, tok, train, scorer, cfg, run_dir, events)
        reference = None
        if cfg.rl.init:  # compare with the SFT run it started from, as PPO does
            model.load_adapter(str(open_run(cfg.rl.init).adapter), adapter_name="reference", is_trainable=False)
            model.set_adapter("default")
            reference = "reference"
        result = {"stage": "rloo", **win_rate(model, tok, val, scorer, cfg, reference)}
    if "reference" in getattr(model, "peft_config", {}):
        model.delete_adapter("reference")  # the frozen starting point is not part of the result
    methods.save_atomically(method, model, tok, run_dir.adapter)
    trainable = methods.trainable_summary(model)
    atomic_write_json(run_dir.summary_file, {"model": ref.name, "method": method.name, "stage": stage,
                                             "trainable": trainable, "train_rows": len(train), "val_rows": len(val),
                                             **summary})
    atomic_write_json(run_dir.path / "eval.json", result)
    atomic_write_text(run_dir.path / "report.md", report(run_dir.name, cfg, summary, result))
    return result


def _with_lora(model, method, settings, task_type: str):
    return method.apply(model, settings, task=task_type)


def _policy(cfg: RunConfig, ref, method, settings, *, frozen_copy: bool, dtype: str | None = None):
    """The policy: a fresh adapter on the base (reference: adapter off), or the SFT run's
    adapter, trainable, with (``frozen_copy``) a frozen copy of it named 'reference'."""
    from peft import PeftModel

    from tunelab.inference.load import resolve_dtype

    if dtype is None:
        dtype = resolve_dtype(cfg.model.dtype, method.name, cfg.train.bf16)
    base = load_model(ref, dtype, cfg.model.trust_remote_code, **method.load_kwargs(settings))
    if not cfg.rl.init:
        return _with_lora(base, method, settings, "CAUSAL_LM"), None
    init = init_run(cfg)
    model = PeftModel.from_pretrained(base, str(init.adapter), is_trainable=True)
    if not frozen_copy:
        return model, None
    model.load_adapter(str(init.adapter), adapter_name="reference", is_trainable=False)
    model.set_adapter("default")
    return model, "reference"


def _ppo(model, tok, prompts, scorer, cfg: RunConfig, run_dir: RunDir, reference, events) -> dict:
    import time

    from tunelab.train import ppo_loop as ppo

    rl, t = cfg.rl, cfg.train
    steps = t.max_steps if t.max_steps > 0 else max(1, math.ceil(t.epochs * len(prompts) / rl.rollout_batch))
    settings = ppo.PpoSettings(
        steps=steps, rollout_batch=rl.rollout_batch, mini_batch=rl.mini_batch, ppo_epochs=rl.ppo_epochs,
        max_new_tokens=rl.max_new_tokens, temperature=rl.temperature, lr=t.lr, clip=rl.clip, vf_coef=rl.vf_coef,
        kl_coef=rl.kl_coef, gamma=rl.gamma, lam=rl.lam, max_grad_norm=t.max_grad_norm,
        weight_decay=t.weight_decay, seed=t.seed)
    start = time.perf_counter()
    value_head, history = ppo.train(model, tok, prompts, scorer.score, settings, reference_adapter=reference,
                                    events=events, log=lambda rec: append_jsonl(run_dir.metrics, rec))
    from safetensors.torch import save_file

    tmp = run_dir.path / ".value_head.safetensors.tmp"
    save_file({k: v.contiguous() for k, v in value_head.state_dict().items()}, str(tmp))
    tmp.replace(run_dir.path / "value_head.safetensors")
    return {"steps": steps, "train_seconds": round(time.perf_counter() - start, 1),
            "first_reward": history[0]["reward"], "last_reward": history[-1]["reward"],
            "last_kl": history[-1]["kl"]}


def win_rate(model, tok, prompts: list[list[dict]], scorer, cfg: RunConfig, reference: str | None) -> dict:
    """Greedy answers of the policy and of its reference to held-out prompts, both scored by
    the reward model: the share the policy wins (ties count half), mean rewards, and the KL of
    the policy's sampled answers to the reference (summed over tokens, averaged over prompts)."""
    import torch

    from tunelab.data.tokens import encode_prompt
    from tunelab.inference.generate import generate, generate_ids
    from tunelab.train.ppo_loop import reference as as_reference
    from tunelab.train.ppo_loop import score_answers

    if not prompts:
        return {"held_out_prompts": 0}
    ids = [encode_prompt(tok, p) for p in prompts]
    n = cfg.rl.max_new_tokens
    tuned = generate(model, tok, ids, max_new_tokens=n, batch_size=len(ids))
    with as_reference(model, reference):
        before = generate(model, tok, ids, max_new_tokens=n, batch_size=len(ids))
    r_tuned, r_before = scorer.score(prompts, tuned), scorer.score(prompts, before)
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(r_tuned, r_before))
    sampled = generate_ids(model, tok, ids, max_new_tokens=n, batch_size=len(ids), temperature=cfg.rl.temperature,
                           seed=cfg.train.seed)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    with torch.no_grad():
        own = score_answers(model, None, ids, sampled, pad, cfg.rl.temperature)
        with as_reference(model, reference):
            ref = score_answers(model, None, ids, sampled, pad, cfg.rl.temperature)
    kl = float(((own.logprobs - ref.logprobs) * own.mask).sum(-1).mean())
    return {
        "held_out_prompts": len(prompts),
        "against": "the SFT run it started from" if reference else "the base model",
        "win_rate": round(wins / len(prompts), 4),
        "mean_reward": round(sum(r_tuned) / len(r_tuned), 4),
        "reference_mean_reward": round(sum(r_before) / len(r_before), 4),
        "kl_to_reference": round(kl, 4),
        "samples": [{"prompt": p[-1]["content"], "policy": a, "reference": b, "policy_reward": round(ra, 3),
                     "reference_reward": round(rb, 3)}
                    for p, a, b, ra, rb in list(zip(prompts, tuned, before, r_tuned, r_before))[:3]],
    }


def report(name: str, cfg: RunConfig, summary: dict, result: dict) -> str:
    stage = result["stage"]
    lines = [f"# {name}: {stage} stage", "", f"model `{cfg.model.name}`, method `{cfg.method.name}`, "
             f"{summary.get('steps')} steps in {summary.get('train_seconds')} s", ""]
    if stage == "reward":
        lines += [f"Held-out pairwise accuracy: **{result['pairwise_accuracy']}** on {result['held_out_pairs']} pairs "
                  "(share of pairs where the chosen answer scores higher; 0.5 is chance)."]
    elif stage == "dpo":
        lines += [f"Held-out preference accuracy: **{result['preference_accuracy']}** on {result['held_out_pairs']} pairs; "
                  f"mean reward margin {result['reward_margin']}."]
    else:
        lines += [f"Win rate over {result.get('against')}: **{result.get('win_rate')}** on "
                  f"{result.get('held_out_prompts')} held-out prompts under the reward model",
                  f"(mean reward {result.get('mean_reward')} vs {result.get('reference_mean_reward')}); "
                  f"KL to the reference {result.get('kl_to_reference')} nats per answer.",
                  f"Training reward went from {summary.get('first_reward')} (step 1) to {summary.get('last_reward')} "
                  f"(last step); per-step reward, KL and entropy are in metrics.jsonl.", ""]
        for s in result.get("samples", []):
            lines += [f"- **{s['prompt']}**", f"  - policy ({s['policy_reward']}): {s['policy']}",
                      f"  - reference ({s['reference_reward']}): {s['reference']}"]
    return "\n".join(lines) + "\n"
