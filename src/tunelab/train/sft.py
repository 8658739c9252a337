"""Supervised fine-tuning: TRL's SFTTrainer on pre-tokenised rows (labels = assistant tokens).

We tokenise ourselves (data.tokens) so the loss mask follows the chat template exactly and
eval uses the same encoding; TRL then runs the loop, checkpoints and evaluation.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from tunelab.config import RunConfig
from tunelab.data.tokens import Encoded
from tunelab.rundir import RunDir
from tunelab.events import EventSink, no_events
from tunelab.train import fastpath
from tunelab.device import use_bf16


@dataclass
class Schedule:
    total_steps: int
    eval_steps: int
    save_steps: int


def schedule(cfg: RunConfig, n_train: int) -> Schedule:
    per_step = cfg.train.batch_size * cfg.train.grad_accum
    steps_per_epoch = max(1, math.ceil(n_train / per_step))
    total = cfg.train.max_steps if cfg.train.max_steps > 0 else max(1, math.ceil(cfg.train.epochs * steps_per_epoch))
    eval_steps = cfg.train.eval_steps or max(1, total // 4)
    return Schedule(total, eval_steps, cfg.train.save_steps or eval_steps)


def _dataset(rows: list[Encoded]):
    from datasets import Dataset

    return Dataset.from_dict({"input_ids": [r.input_ids for r in rows], "labels": [r.labels for r in rows]})


def run(
    model,
    tokenizer,
    train_rows: list[Encoded],
    val_rows: list[Encoded],
    cfg: RunConfig,
    run_dir: RunDir,
    *,
    resume_from: str | None = None,
    events: EventSink = no_events,
) -> dict:
    """Train ``model`` in place; return a summary (steps, losses, time, throughput)."""
    from transformers import EarlyStoppingCallback
    from trl import SFTConfig, SFTTrainer

    from tunelab.train.callbacks import EventCallback, MetricsCallback

    t = cfg.train
    plan = schedule(cfg, len(train_rows))
    bf16 = use_bf16(t.bf16)
    checkpointing = _checkpointing(model, train_rows, cfg, bf16)
    packed = fastpath.padding_free(cfg.method.name, t.fast)
    stopping = bool(t.early_stopping_patience and val_rows)  # restore the best checkpoint at the end
    args = SFTConfig(
        output_dir=str(run_dir.checkpoints),
        num_train_epochs=t.epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=t.lr,
        lr_scheduler_type=t.scheduler,
        warmup_steps=t.warmup_ratio,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        bf16=bf16,
        activation_checkpointing=checkpointing,
        logging_steps=t.logging_steps,
        eval_strategy="steps" if val_rows else "no",
        eval_steps=plan.eval_steps,
        save_strategy="steps",
        save_steps=plan.eval_steps if stopping else plan.save_steps,
        load_best_model_at_end=stopping,
        metric_for_best_model="eval_loss" if stopping else None,
        greater_is_better=False if stopping else None,
        neftune_noise_alpha=t.neftune_noise_alpha,
        save_total_limit=t.save_total_limit,
        seed=t.seed,
        data_seed=t.seed,
        report_to="none",
        disable_tqdm=True,
        max_length=None,  # rows are already truncated to data.max_length
        dataset_kwargs={"skip_prepare_dataset": True},
        dataloader_num_workers=0,
        use_cpu=not _cuda(),
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=_dataset(train_rows),
        eval_dataset=_dataset(val_rows) if val_rows else None,
        processing_class=tokenizer,
        data_collator=fastpath.PackingCollator(model.config._attn_implementation) if packed else None,
        callbacks=[MetricsCallback(run_dir.metrics), EventCallback(events)]
        + ([EarlyStoppingCallback(early_stopping_patience=t.early_stopping_patience)] if stopping else []),
    )
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # progress goes to the event sink, not stdout
    counter = _TokenCounter(trainer, sum(len(r.input_ids) for r in val_rows))
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.perf_counter() - start
    final_eval = trainer.evaluate() if val_rows else {}
    real_tokens = counter.train_tokens()
    return {
        "steps": trainer.state.global_step,
        "train_loss": round(float(result.training_loss), 4),
        "eval_loss": round(float(final_eval["eval_loss"]), 4) if "eval_loss" in final_eval else None,
        "train_seconds": round(seconds, 1),
        "real_tokens": real_tokens,
        "tokens_per_second": round(real_tokens / max(seconds, 1e-9), 1),
        "bf16": bf16,
        "padding_free": packed,
        "gradient_checkpointing": checkpointing,
        "best_step": _best_step(trainer) if stopping else None,
        "stopped_early": stopping and trainer.state.global_step < plan.total_steps,
    }


def _best_step(trainer) -> int | None:
    best = trainer.state.best_model_checkpoint
    return int(best.rsplit("-", 1)[-1]) if best else None


def _checkpointing(model, rows: list[Encoded], cfg: RunConfig, bf16: bool) -> bool:
    setting = cfg.train.gradient_checkpointing
    if setting != "auto":
        return setting == "on"
    longest = max(len(r.input_ids) for r in rows)
    batch_tokens = longest * cfg.train.batch_size  # the worst case: a batch of the longest rows
    return fastpath.needs_checkpointing(model.config, batch_tokens, longest, bf16)


class _TokenCounter:
    """Counts the real (non-padding) tokens of the training batches.

    It wraps the trainer's collator; evaluation batches pass through the same collator, so
    the validation set's tokens are subtracted once per evaluation run."""

    def __init__(self, trainer, val_tokens: int) -> None:
        from transformers import TrainerCallback

        self.total = 0
        self.evals = 0
        self.val_tokens = val_tokens
        collate = trainer.data_collator

        def counting(batch):
            out = collate(batch)
            mask = out.get("attention_mask")
            self.total += int(mask.sum()) if mask is not None and mask.dim() == 2 else out["input_ids"].numel()
            return out

        trainer.data_collator = counting
        counter = self

        class CountEvals(TrainerCallback):
            def on_evaluate(self, *args, **kwargs):
                counter.evals += 1

        trainer.add_callback(CountEvals())

    def train_tokens(self) -> int:
        return self.total - self.evals * self.val_tokens


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
