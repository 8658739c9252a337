"""Supervised fine-tuning recipe: TRL's SFTTrainer on rows we tokenise ourselves (labels =
assistant tokens), so the loss mask follows the chat template exactly and evaluation uses the
same encoding; TRL runs the loop, checkpoints and validation.

    run(cfg, run_dir, events, resume=False) -> RunResult
"""

from __future__ import annotations

from tunelab.config import RunConfig
from tunelab.data import dataset
from tunelab.data.load import write_jsonl
from tunelab.data.tokens import Encoded
from tunelab.errors import ConfigError
from tunelab.events import EventSink, no_events
from tunelab.io import atomic_write_json
from tunelab.rundir import RunDir
from tunelab.train import fastpath, setup

DATA = "chat"  # what the stage trains on: chat, instruction or completion rows


def check(cfg: RunConfig) -> None:
    if not cfg.data.train:
        raise ConfigError("no training data: pass --data FILE.jsonl (or data.train in the config)")


def run(cfg: RunConfig, run_dir: RunDir, events: EventSink = no_events, resume: bool = False) -> setup.RunResult:
    """Train ``cfg.method`` on ``cfg.data`` into ``run_dir``; with ``resume``, continue the run
    there from its newest complete checkpoint on the data it saved."""
    train_rows, val_rows = _rows(cfg, run_dir, resume)
    ref, tokenizer, model = setup.load_base(cfg)
    enc_train = dataset.encode_split(tokenizer, train_rows, cfg.data.max_length, cfg.data.train_on_inputs)
    enc_val = dataset.encode_split(tokenizer, val_rows, cfg.data.max_length, cfg.data.train_on_inputs)
    if not enc_train.rows:
        raise ConfigError(f"no training row has an answer token within data.max_length={cfg.data.max_length}")
    checkpoint = setup.resume_point(run_dir) if resume else None
    if not resume:
        cfg = setup.start_run(cfg, run_dir)
        setup.on_main(_save_data, cfg, run_dir, train_rows, val_rows, enc_train, enc_val)  # one writer per run

    model = setup.apply_method(model, cfg)
    trainable = setup.trainable(model)
    events({"event": "trainable", **trainable})
    trainer = _trainer(model, tokenizer, enc_train.rows, enc_val.rows, cfg, run_dir)
    counter = _TokenCounter(trainer, sum(len(r.input_ids) for r in enc_val.rows))
    loss, seconds = setup.fit(trainer, run_dir, events, resume_from=checkpoint)
    final_eval = fastpath.final_evaluation(trainer) if enc_val.rows else {}
    setup.save_weights(cfg, model, tokenizer, run_dir)
    real_tokens = counter.train_tokens()
    plan = setup.schedule(cfg, len(enc_train.rows))
    stopping = _early_stopping(cfg, enc_val.rows)
    return setup.finish(run_dir, {
        "model": ref.name, "method": cfg.method.name, "stage": "sft", "trainable": trainable,
        "train_rows": len(enc_train.rows), "val_rows": len(enc_val.rows), "base_dtype": setup.base_dtype(cfg),
        "steps": trainer.state.global_step, "train_loss": round(loss, 4),
        "eval_loss": round(float(final_eval["eval_loss"]), 4) if "eval_loss" in final_eval else None,
        "train_seconds": round(seconds, 1), "real_tokens": real_tokens,
        "tokens_per_second": round(real_tokens / max(seconds, 1e-9), 1),
        "bf16": trainer.args.bf16, "padding_free": fastpath.padding_free(cfg.method.name, cfg.train.fast),
        "gradient_checkpointing": trainer.args.activation_checkpointing,
        "best_step": _best_step(trainer) if stopping else None,
        "stopped_early": stopping and trainer.state.global_step < plan.total_steps,
    })


def _rows(cfg: RunConfig, run_dir: RunDir, resume: bool) -> tuple[list, list]:
    """The conversations to train and validate on: the run's saved splits when resuming, else
    the configured files (validation: data.val, or a seeded share of train)."""
    if resume:
        val_file = run_dir.data / "val.jsonl"
        return (dataset.load_conversations(run_dir.data / "train.jsonl"),
                dataset.load_conversations(val_file) if val_file.is_file() else [])
    check(cfg)
    train_rows = dataset.load_conversations(cfg.data.train)
    if cfg.data.val:
        return train_rows, dataset.load_conversations(cfg.data.val)
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
    plan = setup.schedule(cfg, len(train_rows))
    stopping = _early_stopping(cfg, val_rows)  # restores the best checkpoint at the end
    packed = fastpath.padding_free(cfg.method.name, t.fast)
    args = setup.trainer_args(
        SFTConfig, cfg, run_dir, len(train_rows), bool(val_rows),
        activation_checkpointing=_checkpointing(model, train_rows, cfg),
        save_steps=plan.eval_steps if stopping else plan.save_steps,
        load_best_model_at_end=stopping, metric_for_best_model="eval_loss" if stopping else None,
        greater_is_better=False if stopping else None, neftune_noise_alpha=t.neftune_noise_alpha,
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


def _best_step(trainer) -> int | None:
    best = trainer.state.best_model_checkpoint
    return int(best.rsplit("-", 1)[-1]) if best else None


def _checkpointing(model, rows: list[Encoded], cfg: RunConfig) -> bool:
    setting = cfg.train.gradient_checkpointing
    if setting != "auto":
        return setting == "on"
    from tunelab.device import use_bf16

    longest = max(len(r.input_ids) for r in rows)
    batch_tokens = longest * cfg.train.batch_size  # the worst case: a batch of the longest rows
    return fastpath.needs_checkpointing(model.config, batch_tokens, longest, use_bf16(cfg.train.bf16))


class _TokenCounter:
    """Counts the real (non-padding) tokens of the training batches: the examples' own lengths,
    whatever padding or packing the collator adds.

    It wraps the trainer's collator; evaluation batches pass through the same collator, so
    the validation set's tokens are subtracted once per evaluation run."""

    def __init__(self, trainer, val_tokens: int) -> None:
        from transformers import TrainerCallback

        self.total = 0
        self.evals = 0
        self.val_tokens = val_tokens
        collate = trainer.data_collator

        def counting(batch):
            self.total += sum(len(example["input_ids"]) for example in batch)
            return collate(batch)

        trainer.data_collator = counting
        counter = self

        class CountEvals(TrainerCallback):
            def on_evaluate(self, *args, **kwargs):
                counter.evals += 1

        trainer.add_callback(CountEvals())

    def train_tokens(self) -> int:
        return self.total - self.evals * self.val_tokens
