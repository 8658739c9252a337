"""Preference stages on TRL: a reward model (RewardTrainer), DPO (DPOTrainer) and RLOO
(RLOOTrainer), each with a LoRA adapter so the frozen base is shared (DPO's and RLOO's
reference is the base with the adapter off: no second copy in memory). PPO is ours
(train/ppo.py); this module also holds the reward-model scorer PPO, RLOO and the win rate use.
"""

from __future__ import annotations

import time
from pathlib import Path

from tunelab.config import RunConfig
from tunelab.errors import RunError
from tunelab.events import EventSink, no_events
from tunelab.rundir import RunDir, open_run
from tunelab.device import use_bf16


def _conversational(pairs: list[dict]):
    from datasets import Dataset

    return Dataset.from_list([{"prompt": p["prompt"], "chosen": [{"role": "assistant", "content": p["chosen"]}],
                               "rejected": [{"role": "assistant", "content": p["rejected"]}]} for p in pairs])


def _args(config_cls, cfg: RunConfig, run_dir: RunDir, n_train: int, has_val: bool, **extra):
    from tunelab.train.sft import _cuda, schedule

    t = cfg.train
    plan = schedule(cfg, n_train)
    return config_cls(**{**dict(
        output_dir=str(run_dir.checkpoints), num_train_epochs=t.epochs, max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size, per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum, learning_rate=t.lr, lr_scheduler_type=t.scheduler,
        warmup_steps=t.warmup_ratio, weight_decay=t.weight_decay, max_grad_norm=t.max_grad_norm,
        bf16=use_bf16(t.bf16), logging_steps=t.logging_steps,
        eval_strategy="steps" if has_val else "no", eval_steps=plan.eval_steps, save_strategy="steps",
        save_steps=plan.save_steps, save_total_limit=t.save_total_limit, seed=t.seed, data_seed=t.seed,
        report_to="none", disable_tqdm=True, dataloader_num_workers=0, use_cpu=not _cuda()), **extra})


def _fit(trainer, run_dir: RunDir, events: EventSink) -> tuple[float, dict, float]:
    from transformers.trainer_callback import PrinterCallback

    from tunelab.train.callbacks import EventCallback, MetricsCallback

    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(MetricsCallback(run_dir.metrics))
    trainer.add_callback(EventCallback(events))
    start = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - start
    final = trainer.evaluate() if trainer.eval_dataset is not None else {}
    return float(result.training_loss), final, seconds


def run_reward(model, tokenizer, train: list[dict], val: list[dict], cfg: RunConfig, run_dir: RunDir,
               events: EventSink = no_events) -> dict:
    """Train a scalar reward head (and LoRA) on (prompt, chosen, rejected) pairs: the loss is
    -log sigmoid(r_chosen - r_rejected). Reports pairwise accuracy on ``val``."""
    from trl import RewardConfig, RewardTrainer

    trainer = RewardTrainer(
        model=model, processing_class=tokenizer,
        args=_args(RewardConfig, cfg, run_dir, len(train), bool(val), max_length=cfg.data.max_length,
                   activation_checkpointing=False),
        train_dataset=_conversational(train), eval_dataset=_conversational(val) if val else None)
    loss, final, seconds = _fit(trainer, run_dir, events)
    # the trainer's eval_accuracy averages per-batch accuracies; this counts every pair once
    accuracy = RewardScorer(model, tokenizer, cfg.data.max_length).pairwise_accuracy(val) if val else None
    return {"steps": trainer.state.global_step, "train_loss": round(loss, 4),
            "eval_loss": round(final["eval_loss"], 4) if "eval_loss" in final else None,
            "eval_accuracy": round(accuracy, 4) if accuracy is not None else None,
            "train_seconds": round(seconds, 1)}


def run_dpo(model, tokenizer, train: list[dict], val: list[dict], cfg: RunConfig, run_dir: RunDir,
            events: EventSink = no_events) -> dict:
    """DPO on a LoRA policy; the reference is the same model with the adapter disabled."""
    from trl import DPOConfig, DPOTrainer

    trainer = DPOTrainer(
        model=model, ref_model=None, processing_class=tokenizer,
        args=_args(DPOConfig, cfg, run_dir, len(train), bool(val), beta=cfg.rl.beta,
                   max_length=cfg.data.max_length, activation_checkpointing=False),
        train_dataset=_conversational(train), eval_dataset=_conversational(val) if val else None)
    loss, final, seconds = _fit(trainer, run_dir, events)
    return {"steps": trainer.state.global_step, "train_loss": round(loss, 4),
            "eval_loss": round(final["eval_loss"], 4) if "eval_loss" in final else None,
            "eval_accuracy": round(final["eval_rewards/accuracies"], 4) if "eval_rewards/accuracies" in final else None,
            "eval_margin": round(final["eval_rewards/margins"], 4) if "eval_rewards/margins" in final else None,
            "train_seconds": round(seconds, 1)}


def run_rloo(model, tokenizer, prompts: list[list[dict]], scorer: "RewardScorer", cfg: RunConfig,
             run_dir: RunDir, events: EventSink = no_events) -> dict:
    """REINFORCE leave-one-out (TRL's RLOOTrainer): ``rl.num_generations`` answers per prompt,
    each answer's baseline the mean reward of the others; the reward model is the reward
    function; the KL reference is the base with the adapter off."""
    from datasets import Dataset
    from trl import RLOOConfig, RLOOTrainer

    def reward_model(prompts, completions, **_):
        texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
        return scorer.score([list(p) for p in prompts], texts)

    rl = cfg.rl
    per_step = rl.num_generations * max(1, rl.rollout_batch // rl.num_generations)  # answers per step
    args = _args(RLOOConfig, cfg, run_dir, len(prompts) * rl.num_generations, False,
                 num_generations=rl.num_generations, max_completion_length=rl.max_new_tokens, beta=rl.kl_coef,
                 temperature=rl.temperature, activation_checkpointing=False, per_device_train_batch_size=per_step,
                 per_device_eval_batch_size=per_step)
    trainer = RLOOTrainer(model=model, reward_funcs=reward_model, args=args, processing_class=tokenizer,
                          train_dataset=Dataset.from_list([{"prompt": p} for p in prompts]))
    _, _, seconds = _fit(trainer, run_dir, events)
    logs = [h for h in trainer.state.log_history if "reward" in h]
    return {"steps": trainer.state.global_step, "train_seconds": round(seconds, 1),
            "first_reward": round(logs[0]["reward"], 4) if logs else None,
            "last_reward": round(logs[-1]["reward"], 4) if logs else None,
            "last_kl": round(logs[-1].get("kl", 0.0), 4) if logs else None}


# ------------------------------------------------------------------------------- reward scoring
def reward_run(path: str | Path) -> RunDir:
    """The run directory of a trained reward model, or a clear error."""
    run = open_run(path)
    cfg = run.config()
    if cfg.train.stage != "reward":
        raise RunError(f"{run.path}: not a reward model (a '{cfg.train.stage}' run); train one with "
                       "`tunelab train --stage reward --data PAIRS.jsonl`")
    if not (run.adapter / "adapter_config.json").is_file():
        raise RunError(f"{run.path}: the reward model has no saved weights (adapter/ is missing); did training finish?")
    return run


class RewardScorer:
    """Scores (prompt, answer) pairs with a reward model: base + LoRA + score head."""

    def __init__(self, model, tokenizer, max_length: int = 512) -> None:
        self.model, self.tokenizer, self.max_length = model, tokenizer, max_length

    @classmethod
    def from_run(cls, path: str | Path, dtype: str = "float32") -> "RewardScorer":
        from peft import PeftModel

        from tunelab.models.load import load_model, load_tokenizer, resolve

        run = reward_run(path)
        cfg = run.config()
        ref = resolve(cfg.model.name)
        base = load_model(ref, dtype, cfg.model.trust_remote_code, head="reward")
        model = PeftModel.from_pretrained(base, str(run.adapter)).eval()
        return cls(model, load_tokenizer(ref, cfg.model.trust_remote_code), cfg.data.max_length)

    def score(self, prompts: list[list[dict]], answers: list[str], batch_size: int = 16) -> list[float]:
        import torch

        from tunelab.data.tokens import render

        texts = [render(self.tokenizer, p + [{"role": "assistant", "content": a}]) for p, a in zip(prompts, answers)]
        out: list[float] = []
        device = next(self.model.parameters()).device
        was_training = self.model.training
        self.model.eval()
        for lo in range(0, len(texts), batch_size):
            enc = self.tokenizer(texts[lo:lo + batch_size], return_tensors="pt", padding=True, truncation=True,
                                 max_length=self.max_length, add_special_tokens=False)
            with torch.inference_mode():
                out += self.model(**{k: v.to(device) for k, v in enc.items()}).logits[:, 0].float().tolist()
        self.model.train(was_training)
        return out

    def pairwise_accuracy(self, pairs: list[dict]) -> float:
        """Share of pairs whose chosen answer scores above the rejected one (ties count half)."""
        prompts = [p["prompt"] for p in pairs]
        chosen = self.score(prompts, [p["chosen"] for p in pairs])
        rejected = self.score(prompts, [p["rejected"] for p in pairs])
        return sum(1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(chosen, rejected)) / max(len(pairs), 1)
