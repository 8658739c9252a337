"""Supervised fine-tuning recipe: TRL's SFTTrainer on rows we tokenise ourselves (labels =
assistant tokens), so the loss mask follows the chat template exactly and evaluation uses the
same encoding; TRL runs the loop, checkpoints and validation.

    run(cfg, run_dir, events, resume=False) -> RunResult
"""

from __future__ import annotations

import time

from tunelab.config import RunConfig, parse_duration
from tunelab.data import dataset
from tunelab.data.load import write_jsonl
from tunelab.data.tokens import Encoded
from tunelab.errors import ConfigError
from tunelab.events import EventSink, no_events
from tunelab.io import atomic_write_json
from tunelab.rundir import RunDir
from tunelab.train import auto, blend, fastpath, setup

DATA = "chat"  # what the stage trains on: chat, instruction or completion rows


def check(cfg: RunConfig) -> None:
    if not cfg.data.train:
        raise ConfigError("no training data: pass --data FILE.jsonl (or data.train in the config)")


def run(cfg: RunConfig, run_dir: RunDir, events: EventSink = no_events, resume: bool = False) -> setup.RunResult:
    """Train ``cfg.method`` on ``cfg.data`` into ``run_dir``; with ``resume``, continue the run
    there from its newest complete checkpoint on the data it saved. Values left at ``auto`` are
    chosen from the encoded training rows (train/auto.py); the run ends with the weights of its
    best validation loss."""
    started = time.monotonic()  # train.time_budget counts from here: loading and encoding included
    train_rows, val_rows = _rows(cfg, run_dir, resume)
    ref, tokenizer, model = setup.load_base(cfg)
    blended = None
    if cfg.train.blend and not resume:
        train_rows, blended = _blend(cfg, train_rows, model, tokenizer, ref, events)
    enc_train = dataset.encode_split(tokenizer, train_rows, cfg.data.max_length, cfg.data.train_on_inputs)
    enc_val = dataset.encode_split(tokenizer, val_rows, cfg.data.max_length, cfg.data.train_on_inputs)
    if not enc_train.rows:
        raise ConfigError(f"no training row has an answer token within data.max_length={cfg.data.max_length}")
    checkpoint = setup.resume_point(run_dir) if resume else None
    chosen = ""
    if not resume:
        cfg, chosen = auto.resolve(cfg, auto.DataStats.of(enc_train.rows), model.num_parameters())
        if chosen:
            events({"event": "note", "text": chosen})
        cfg = setup.start_run(cfg, run_dir)
        setup.on_main(_save_data, cfg, run_dir, train_rows, val_rows, enc_train, enc_val)  # one writer per run

    model = setup.apply_method(model, cfg)
    trainable = setup.trainable(model)
    events({"event": "trainable", **trainable})
    trainer = _trainer(model, tokenizer, enc_train.rows, enc_val.rows, cfg, run_dir)
    counter = _TokenCounter(trainer)
    _announce_budget(cfg, enc_train.rows, model, events)
    loss, seconds = setup.fit(trainer, run_dir, events, resume_from=checkpoint, cfg=cfg, started=started)
    final_eval = fastpath.final_evaluation(trainer) if enc_val.rows else {}
    setup.save_weights(cfg, model, tokenizer, run_dir)
    real_tokens = counter.train_tokens()
    plan = setup.schedule(cfg, len(enc_train.rows))
    return setup.finish(run_dir, {
        "model": ref.name, "method": cfg.method.name, "stage": "sft", "trainable": trainable,
        "train_rows": len(enc_train.rows), "val_rows": len(enc_val.rows), "base_dtype": setup.base_dtype(cfg),
        "steps": trainer.state.global_step, "train_loss": round(loss, 4),
        "eval_loss": round(float(final_eval["eval_loss"]), 4) if "eval_loss" in final_eval else None,
        "train_seconds": round(seconds, 1), "real_tokens": real_tokens,
        "tokens_per_second": round(real_tokens / max(seconds, 1e-9), 1),
        "bf16": trainer.args.bf16, "padding_free": fastpath.padding_free(cfg.method.name, cfg.train.fast),
        "gradient_checkpointing": trainer.args.activation_checkpointing,
        **_best(trainer),
        "stopped_early": _early_stopping(cfg, enc_val.rows) and trainer.state.global_step < plan.total_steps,
        "auto": chosen or None, "blend": blended, "time_budget": _budget_summary(trainer),
    })


def _blend(cfg: RunConfig, train_rows, model, tokenizer, ref, events: EventSink):
    """The training conversations with train.blend's general rows mixed in (train/blend.py)."""
    def general(n: int):
        events({"event": "note", "text": f"blend: writing {n} general rows with the base model (cached after)"})
        return blend.general_rows(model, tokenizer, ref.source, n, cfg.train.seed)

    return blend.mix(cfg.train.blend, train_rows, cfg.train.seed, general, events)


def _announce_budget(cfg: RunConfig, rows: list[Encoded], model, events: EventSink) -> None:
    """Before training: about how many of the planned steps fit train.time_budget, from the
    reference machine's measured throughput (refined after the first steps)."""
    from tunelab.train import budget

    if not cfg.train.time_budget:
        return
    plan = setup.schedule(cfg, len(rows))
    seconds = parse_duration(cfg.train.time_budget)
    per_step_tokens = sum(len(r.input_ids) for r in rows) / len(rows) * cfg.train.batch_size * cfg.train.grad_accum
    step_s = budget.estimate_seconds_per_step(per_step_tokens, cfg.method.name, model.num_parameters())
    guess = "" if step_s is None else (
        f"; about {min(plan.total_steps, int(seconds / step_s))} fit at the reference machine's speed")
    events({"event": "note", "text": f"time budget {cfg.train.time_budget}: {plan.total_steps} steps planned{guess}; "
                                     f"fitted after timing the first {budget.PROBE_STEPS + 1} steps"})


def _best(trainer) -> dict:
    """The step whose weights the run ended with, and its validation loss (None without validation)."""
    state = trainer.state
    if not trainer.args.load_best_model_at_end or state.best_global_step is None:
        return {"best_step": None, "best_eval_loss": None}
    return {"best_step": state.best_global_step, "best_eval_loss": round(float(state.best_metric), 4)}


def _budget_summary(trainer) -> dict | None:
    from tunelab.train import budget

    found = [c for c in trainer.callback_handler.callbacks if isinstance(c, budget.BudgetCallback)]
    return found[0].summary() if found else None


def report(summary: dict) -> list[str]:
    """train_report.md's lines for a supervised run."""
    lines = [f"Final validation loss **{summary.get('eval_loss')}** on {summary.get('val_rows')} rows; "
             f"training loss {summary.get('train_loss')}."]
    if summary.get("best_step") is not None:
        lines.append(f"Best checkpoint: step **{summary['best_step']}** of {summary['steps']} (validation loss "
                     f"{summary['best_eval_loss']}); the saved adapter is that step's.")
    if summary.get("auto"):
        lines.append(f"Chosen automatically: {summary['auto'].removeprefix('auto: ')}.")
    fit = summary.get("time_budget")
    if fit:
        timed = (f"{fit['step_seconds']} s a step measured" if "step_seconds" in fit
                 else "stopped before the first steps could be timed")
        lines.append(f"Time budget {fit['seconds']:g} s: {summary['steps']} steps run of {fit['planned_steps']} "
                     f"planned ({timed}).")
    if summary.get("blend"):
        b = summary["blend"]
        lines.append(f"Blended {b['rows']} general rows from `{b['source']}` into training (share {b['share']}).")
    return lines


def _rows(cfg: RunConfig, run_dir: RunDir, resume: bool) -> tuple[list, list]:
    """The conversations to train and validate on: the run's saved splits when resuming, else
    the configured files (validation: data.val, or a seeded share of train)."""
    if resume:
        val_file = run_dir.data / "val.jsonl"
        return (dataset.load_conversations(run_dir.data / "train.jsonl"),
                dataset.load_conversations(val_file) if val_file.is_file() else [])
    check(cfg)
    train_rows = dataset.load_conversations(cfg.data.train, cfg.data.columns)
    if cfg.data.val:
        return train_rows, dataset.load_conversations(cfg.data.val, cfg.data.columns)
    return dataset.split_train_val(train_rows, cfg.data.val_fraction, cfg.train.seed)


def _save_data(cfg: RunConfig, run_dir: RunDir, train_rows, val_rows, enc_train, enc_val) -> None:
    write_jsonl(run_dir.data / "train.jsonl", [{"messages": m} for m in train_rows])
    if val_rows:
        write_jsonl(run_dir.data / "val.jsonl", [{"messages": m} for m in val_rows])
    atomic_write_json(run_dir.data / "data_card.json", dataset.data_card(
        {"train": cfg.data.train, "val": cfg.data.val}, {"train": enc_train, "val": enc_val}))


def _trainer(model, tokenizer, train_rows: list[Encoded], val_rows: list[Encoded], cfg: RunConfig, run_dir: RunDir):
    from transformers import EarlyStoppingCallback
    from trl import SFTConfig, SFTTrainer

    t = cfg.train
    stopping = _early_stopping(cfg, val_rows)  # the best checkpoint comes back at the end in any case
    packed = fastpath.padding_free(cfg.method.name, t.fast)
    args = setup.trainer_args(
        SFTConfig, cfg, run_dir, len(train_rows), bool(val_rows),
        activation_checkpointing=_checkpointing(model, train_rows, cfg), neftune_noise_alpha=t.neftune_noise_alpha,
        max_length=None,  # rows are already truncated to data.max_length
        dataset_kwargs={"skip_prepare_dataset": True})
    return SFTTrainer(
        model=model, args=args, train_dataset=_dataset(train_rows),
        eval_dataset=_dataset(val_rows) if val_rows else None, processing_class=tokenizer,
        data_collator=fastpath.PackingCollator(model.config._attn_implementation, tokenizer.pad_token_id or 0)
        if packed else None,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=t.early_stopping_patience)] if stopping else [])


def _dataset(rows: list[Encoded]):
    from datasets import Dataset

    return Dataset.from_dict({"input_ids": [r.input_ids for r in rows], "labels": [r.labels for r in rows]})


def _early_stopping(cfg: RunConfig, val_rows) -> bool:
    return bool(cfg.train.early_stopping_patience and val_rows)


def _checkpointing(model, rows: list[Encoded], cfg: RunConfig) -> bool:
    setting = cfg.train.gradient_checkpointing
    if setting != "auto":
        return setting == "on"
    from tunelab.device import use_bf16

    longest = max(len(r.input_ids) for r in rows)
    batch_tokens = longest * cfg.train.batch_size  # the worst case: a batch of the longest rows
    return fastpath.needs_checkpointing(model.config, batch_tokens, longest, use_bf16(cfg.train.bf16))


class _TokenCounter:
    """Counts the real (non-padding) tokens of the batches this process trained on: the
    examples' own lengths, whatever padding or packing the collator adds.

    The trainer's collator also builds the evaluation batches, and the training loader collates
    a batch ahead of the step that uses it; so a training batch's count waits in a queue until
    a training step takes it, and batches collated inside an evaluation are not queued. Under
    several processes each one counts only its own share of every global batch, and
    setup.finish adds the processes' counts together (an all-reduce sum), so the run's tokens
    and tokens/s are those of all processes; nothing is multiplied by the world size."""

    def __init__(self, trainer) -> None:
        from collections import deque

        self.total = 0
        self.waiting: deque[int] = deque()
        self.evaluating = False
        collate, train_step, evaluation_loop = trainer.data_collator, trainer.training_step, trainer.evaluation_loop

        def counting(batch):
            if not self.evaluating:
                self.waiting.append(sum(len(example["input_ids"]) for example in batch))
            return collate(batch)

        def stepping(*args, **kwargs):
            self.total += self.waiting.popleft() if self.waiting else 0
            return train_step(*args, **kwargs)

        def evaluating(*args, **kwargs):
            self.evaluating = True
            try:
                return evaluation_loop(*args, **kwargs)
            finally:
                self.evaluating = False

        trainer.data_collator, trainer.training_step, trainer.evaluation_loop = counting, stepping, evaluating

    def train_tokens(self) -> int:
        return self.total
