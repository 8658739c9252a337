"""Reward-model recipe: a scalar score head plus LoRA on (prompt, chosen, rejected) pairs through
TRL's RewardTrainer (loss -log sigmoid(r_chosen - r_rejected)); the held-out pairwise accuracy
goes to run.json. Also the scorer that PPO, RLOO, the win rate and `tunelab reward` use.

    run(cfg, run_dir, events, resume=False) -> RunResult

The saved adapter carries the score head instead of the LM head: the generating commands
refuse a reward run and name `tunelab reward` instead.
"""

from __future__ import annotations

from pathlib import Path

from tunelab import methods
from tunelab.config import RunConfig
from tunelab.errors import ConfigError, RunError
from tunelab.events import EventSink, no_events
from tunelab.rundir import RunDir, open_run
from tunelab.train import setup

DATA = "pairs"


def check(cfg: RunConfig) -> None:
    if not methods.get(cfg.method.name).lora_family:
        raise ConfigError(f"--stage reward trains a LoRA-family adapter ({', '.join(methods.lora_family())}); "
                          f"method '{cfg.method.name}' is for supervised runs")
    if not cfg.data.train:
        raise ConfigError("no training data: pass --data FILE.jsonl (preference pairs)")


def run(cfg: RunConfig, run_dir: RunDir, events: EventSink = no_events, resume: bool = False) -> setup.RunResult:
    from trl import RewardConfig, RewardTrainer

    train, val = setup.pair_rows(cfg, run_dir, resume)
    ref, tokenizer, base = setup.load_base(cfg, head="reward", dtype="float32")
    checkpoint = setup.resume_point(run_dir) if resume else None
    if not resume:
        cfg = setup.start_run(cfg, run_dir)
        setup.save_pairs(run_dir, train, val)
    model = setup.apply_method(base, cfg, task="SEQ_CLS")
    args = setup.trainer_args(RewardConfig, cfg, run_dir, len(train), bool(val), max_length=cfg.data.max_length,
                              activation_checkpointing=cfg.train.gradient_checkpointing == "on")
    trainer = RewardTrainer(model=model, processing_class=tokenizer, args=args,
                            train_dataset=setup.conversational_pairs(train),
                            eval_dataset=setup.conversational_pairs(val) if val else None)
    _check_pairs_fit(trainer, cfg)
    loss, seconds = setup.fit(trainer, run_dir, events, resume_from=checkpoint)
    final = trainer.evaluate() if val else {}
    # the trainer's eval_accuracy averages per-batch accuracies; this counts every pair once
    accuracy = RewardScorer(model, tokenizer, cfg.data.max_length).pairwise_accuracy(val) if val else None
    setup.save_weights(cfg, model, tokenizer, run_dir)
    return setup.finish(run_dir, {
        "model": ref.name, "method": cfg.method.name, "stage": "reward", "trainable": setup.trainable(model),
        "train_rows": len(train), "val_rows": len(val), "steps": trainer.state.global_step,
        "train_loss": round(loss, 4), "train_seconds": round(seconds, 1),
        "eval_loss": round(final["eval_loss"], 4) if "eval_loss" in final else None,
        "held_out": {"pairs": len(val), "pairwise_accuracy": None if accuracy is None else round(accuracy, 4)},
    })


def report(summary: dict) -> list[str]:
    held = summary["held_out"]
    return [f"Held-out pairwise accuracy: **{held['pairwise_accuracy']}** on {held['pairs']} pairs "
            "(share of pairs where the chosen answer scores higher; 0.5 is chance)."]


# ------------------------------------------------------------------------------- scoring
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

        from tunelab.inference.load import run_tokenizer
        from tunelab.models.load import load_model, resolve

        run = reward_run(path)
        cfg = run.config()
        ref = resolve(cfg.model.name)
        base = load_model(ref, dtype, cfg.model.trust_remote_code, head="reward")
        model = PeftModel.from_pretrained(base, str(run.adapter)).eval()
        return cls(model, run_tokenizer(run, ref, cfg), cfg.data.max_length)  # the template it was trained with

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


def _check_pairs_fit(trainer, cfg: RunConfig) -> None:
    """The trainer drops pairs longer than data.max_length; with none left in a split, training
    (or choosing the best checkpoint by validation loss) has nothing to work on."""
    for split, data in (("training", trainer.train_dataset), ("validation", trainer.eval_dataset)):
        if data is not None and len(data) == 0:
            raise ConfigError(f"every {split} pair is longer than data.max_length={cfg.data.max_length} tokens",
                              hint="raise data.max_length (--set data.max_length=...) or shorten the pairs")
