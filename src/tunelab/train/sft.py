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
from tunelab.train.device import use_bf16


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
    from trl import SFTConfig, SFTTrainer

    from tunelab.train.callbacks import EventCallback, MetricsCallback

    t = cfg.train
    plan = schedule(cfg, len(train_rows))
    bf16 = use_bf16(t.bf16)
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
        activation_checkpointing=t.gradient_checkpointing,
        logging_steps=t.logging_steps,
        eval_strategy="steps" if val_rows else "no",
        eval_steps=plan.eval_steps,
        save_strategy="steps",
        save_steps=plan.save_steps,
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
        callbacks=[MetricsCallback(run_dir.metrics), EventCallback(events)],
    )
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # progress goes to the event sink, not stdout
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume_from)
    seconds = time.perf_counter() - start
    final_eval = trainer.evaluate() if val_rows else {}
    steps_done = trainer.state.global_step
    tokens_per_epoch = sum(len(r.input_ids) for r in train_rows)
    epochs_done = steps_done / max(1, math.ceil(len(train_rows) / (t.batch_size * t.grad_accum)))
    return {
        "steps": steps_done,
        "train_loss": round(float(result.training_loss), 4),
        "eval_loss": round(float(final_eval["eval_loss"]), 4) if "eval_loss" in final_eval else None,
        "train_seconds": round(seconds, 1),
        "tokens_per_second": round(tokens_per_epoch * epochs_done / max(seconds, 1e-9), 1),
        "bf16": bf16,
    }


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
