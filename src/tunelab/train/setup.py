"""What every training recipe shares, written once: the run directory, seeding, the base model
with its method, the trainer's arguments, the loop with tunelab's callbacks, and the save.

A recipe (train/sft.py, reward.py, dpo.py, ppo.py, rloo.py, grpo.py) reads top to bottom and calls
these in order; none of them knows which stage called it.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from tunelab import methods
from tunelab.config import RunConfig
from tunelab.data.split import split_indices
from tunelab.device import use_bf16
from tunelab.errors import RunError
from tunelab.events import EventSink, no_events
from tunelab.inference.load import resolve_dtype
from tunelab.io import atomic_write_json, atomic_write_text
from tunelab.models.load import load_model, load_tokenizer, resolve
from tunelab.rundir import RunDir
from tunelab.train import auto, distributed
from tunelab.train.distributed import on_main  # recipes write their own files through it: one writer per run


@dataclass
class RunResult:
    """What a recipe returns: its run directory and the summary it wrote to run.json."""

    run_dir: RunDir
    summary: dict = field(default_factory=dict)


@dataclass
class Schedule:
    total_steps: int
    eval_steps: int
    save_steps: int


# ------------------------------------------------------------------------------- the run directory
def run_path(cfg: RunConfig) -> Path:
    """runs/<stage->method-<time>, unless the config names the run."""
    stage = "" if cfg.train.stage == "sft" else f"{cfg.train.stage}-"
    name = cfg.name or f"{stage}{cfg.method.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    return Path(cfg.out_dir) / name


def start_run(cfg: RunConfig, run_dir: RunDir) -> RunConfig:
    """Create the run directory (never over an existing one) and write the resolved config and
    the processes it runs on. Every process checks before any writes (so all of them refuse an
    existing folder alike); only the main process writes."""
    from tunelab.train import tracking

    tracking.check(cfg.train.report_to)
    if run_dir.path.exists() and any(run_dir.path.iterdir()):
        raise RunError(f"{run_dir.path}: already exists and is not empty; choose another --out or --resume it")
    distributed.wait_for_everyone()
    cfg = auto.settle(cfg).model_copy(update={"name": run_dir.name})  # config.yaml holds numbers, never auto
    distributed.on_main(_write_start, cfg, run_dir)
    return cfg


def _write_start(cfg: RunConfig, run_dir: RunDir) -> None:
    run_dir.path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir.config_file, cfg.to_yaml())
    atomic_write_json(run_dir.launch_file, distributed.describe(cfg))


def split(rows: list, keys: list[str], fraction: float, seed: int) -> tuple[list, list]:
    """A seeded train/validation split keyed on each row's content (stable under reordering)."""
    if not rows or fraction <= 0:
        return rows, []
    train_idx, val_idx = split_indices(keys, [fraction], seed)
    return [rows[i] for i in train_idx], [rows[i] for i in val_idx]


def finish(run_dir: RunDir, summary: dict) -> RunResult:
    """run.json, written by the main process once every process has finished: the processes
    that trained the run, and the real tokens and tokens/s of all of them together."""
    cfg = run_dir.config()
    summary = {**distributed.summed_tokens(summary), "distributed": distributed.describe(cfg),
               "chat_template": chat_template_record(cfg, run_dir)}
    distributed.on_main(atomic_write_json, run_dir.summary_file, summary)
    return RunResult(run_dir, summary)


def chat_template_record(cfg: RunConfig, run_dir: RunDir) -> dict | None:
    """The chat template the run trained with, as saved beside its weights: data.chat_template's
    name (or "model", the base's own) and the sha256 of the text, which loads compare against."""
    import hashlib

    from tunelab.inference.load import saved_template

    try:
        text = saved_template(run_dir.weights())
    except RunError:
        return None
    if text is None:
        return None
    return {"name": cfg.data.chat_template or "model", "sha256": hashlib.sha256(text.encode()).hexdigest()}


# ------------------------------------------------------------------------------- model and method
def seed_everything(seed: int) -> None:
    from transformers import set_seed

    set_seed(seed)


def base_dtype(cfg: RunConfig) -> str:
    """The dtype the base loads in for training: the one auto rule, with the fast path off
    meaning fp32 throughout."""
    return resolve_dtype(cfg.model.dtype, cfg.method.name, cfg.train.bf16 if cfg.train.fast else "off")


def load_base(cfg: RunConfig, *, head: str = "lm", dtype: str | None = None):
    """(ModelRef, tokenizer, base model) for ``cfg``; loading fails early (no 4-bit support,
    unknown model) before a recipe writes anything it cannot finish."""
    from tunelab.train import fastpath

    distributed.check(cfg)
    method = methods.get(cfg.method.name)
    load_kwargs = method.load_kwargs(method.settings(cfg.method))
    ref = resolve(cfg.model.name)
    tokenizer = load_tokenizer(ref, cfg.model.trust_remote_code, cfg.data.chat_template)
    seed_everything(cfg.train.seed)  # a head the checkpoint lacks (the reward score) starts the same in every run
    if cfg.train.fast or distributed.world_size() > 1:  # several processes must never each take every core
        fastpath.set_threads()
    model = load_model(ref, dtype or base_dtype(cfg), cfg.model.trust_remote_code, head=head,
                       device_map=distributed.device_map(cfg), **load_kwargs)
    return ref, tokenizer, model


def apply_method(model, cfg: RunConfig, task: str = "CAUSAL_LM"):
    """The method's trainable weights on the base, initialised from train.seed (not from
    whatever consumed random numbers before)."""
    method = methods.get(cfg.method.name)
    seed_everything(cfg.train.seed)
    return method.apply(model, method.settings(cfg.method), task=task)


def trainable(model) -> dict:
    """Trainable and total parameters, and the weights' footprint in memory (4-bit counted packed)."""
    tensors = list(model.parameters()) + list(model.buffers())
    footprint = sum(t.numel() * t.element_size() for t in tensors)
    return {**methods.trainable_summary(model), "model_mb": round(footprint / 2**20, 1)}


def save_weights(cfg: RunConfig, model, tokenizer, run_dir: RunDir) -> None:
    """The trained weights into adapter/ (or model/ for full fine-tuning), swapped in atomically."""
    method = methods.get(cfg.method.name)
    folder = run_dir.model if method.saves == "model" else run_dir.adapter
    distributed.on_main(methods.save_atomically, method, model, tokenizer, folder)


# ------------------------------------------------------------------------------- the trainer
def schedule(cfg: RunConfig, n_train: int) -> Schedule:
    cfg = auto.settle(cfg)  # a recipe resolves auto from its data first; what is left gets the fixed values
    per_step = cfg.train.batch_size * cfg.train.grad_accum * distributed.world_size()  # rows per optimizer step
    steps_per_epoch = max(1, math.ceil(n_train / per_step))
    total = cfg.train.max_steps if cfg.train.max_steps > 0 else max(1, math.ceil(cfg.train.epochs * steps_per_epoch))
    eval_steps = cfg.train.eval_steps or max(1, total // 4)
    return Schedule(total, eval_steps, cfg.train.save_steps or eval_steps)


def cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def trainer_args(config_cls, cfg: RunConfig, run_dir: RunDir, n_train: int, has_val: bool, **extra):
    """The one list of TrainingArguments every recipe starts from; ``extra`` adds or replaces
    the stage's own (TRL's SFTConfig, DPOConfig, RewardConfig, RLOOConfig, GRPOConfig)."""
    from tunelab.train import guards, tracking

    cfg = auto.settle(cfg)
    t = cfg.train
    plan = schedule(cfg, n_train)
    args = dict(
        output_dir=str(run_dir.checkpoints), num_train_epochs=t.epochs, max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size, per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum, learning_rate=t.lr, lr_scheduler_type=t.scheduler,
        warmup_steps=t.warmup_ratio, weight_decay=t.weight_decay, max_grad_norm=t.max_grad_norm,
        bf16=use_bf16(t.bf16), logging_steps=t.logging_steps,
        eval_strategy="steps" if has_val else "no", eval_steps=plan.eval_steps,
        save_strategy="steps", save_steps=plan.save_steps, save_total_limit=t.save_total_limit,
        seed=t.seed, data_seed=t.seed, report_to=tracking.trainer_report_to(cfg), run_name=run_dir.name,
        disable_tqdm=True, dataloader_num_workers=0,
        use_cpu=not cuda(), **guards.TRAINER_ARGS, **distributed.trainer_args(cfg))
    merged = {**args, **best_checkpoint(has_val), **extra}
    if merged.get("load_best_model_at_end") and merged["save_steps"] % merged["eval_steps"]:
        merged["save_steps"] = merged["eval_steps"]  # the best weights come back from a checkpoint saved at an evaluation
    return config_cls(**merged)


def best_checkpoint(has_val: bool) -> dict:
    """With validation rows, every run ends with the weights of its lowest validation loss
    (checkpoints are saved at each evaluation; the best one is kept and restored at the end)."""
    if not has_val:
        return {}
    return {"load_best_model_at_end": True, "metric_for_best_model": "eval_loss", "greater_is_better": False}


def fit(trainer, run_dir: RunDir, events: EventSink, resume_from: str | None = None, *,
        cfg: RunConfig | None = None, started: float | None = None) -> tuple[float, float]:
    """Run the trainer's loop with tunelab's callbacks (metrics.jsonl, progress events, the
    signal and non-finite guards) and the run's experiment trackers open (train.report_to);
    returns (mean training loss, seconds). An interrupted run has written a checkpoint and
    raises guards.Interrupted; a non-finite loss raises before anything is saved. With
    train.time_budget the run is fitted to end within it, counted from ``started``
    (time.monotonic(); default: now) — see train/budget.py."""
    from transformers.trainer_callback import PrinterCallback

    from tunelab.train import guards, tracking
    from tunelab.train.callbacks import EventCallback, MetricsCallback

    trainer.remove_callback(PrinterCallback)  # progress goes to the event sink, not stdout
    events = events if distributed.is_main() else no_events  # one progress display for the run
    if resume_from is not None:
        distributed.note_world_size(run_dir, events)
    signals = guards.StopOnSignal()
    for callback in (MetricsCallback(run_dir.metrics), EventCallback(events), guards.NonFiniteGuard(),
                     *distributed.shared_stop(signals), signals,  # every process stops after the same step
                     *_budget(trainer, run_dir, cfg, started, events)):
        trainer.add_callback(callback)
    start = time.perf_counter()
    tracked = (tracking.session(run_dir.config(), run_dir, trainer.callback_handler.callbacks)
               if distributed.is_main() else contextlib.nullcontext())
    with guards.friendly_oom(), distributed.peer_guard(), signals, tracked:
        result = trainer.train(resume_from_checkpoint=resume_from)
    guards.raise_if_interrupted(signals, run_dir)
    return float(result.training_loss), time.perf_counter() - start


def _budget(trainer, run_dir: RunDir, cfg: RunConfig | None, started: float | None, events: EventSink) -> list:
    """The time-budget callback when train.time_budget is set, on a single-process run (the
    processes of a distributed run would each measure and stop at different steps)."""
    from tunelab.config import parse_duration
    from tunelab.train.budget import BudgetCallback

    if distributed.world_size() > 1:
        return []
    cfg = cfg or run_dir.config()
    if not cfg.train.time_budget:
        return []
    eval_rows = len(trainer.eval_dataset) if trainer.eval_dataset is not None else 0
    return [BudgetCallback(parse_duration(cfg.train.time_budget), time.monotonic() if started is None else started,
                           eval_rows, events, fixed_eval_steps=cfg.train.eval_steps is not None)]


def resume_point(run_dir: RunDir) -> str:
    """The newest complete checkpoint, with metrics.jsonl cut back to its step so the replayed
    steps are not logged twice."""
    checkpoint = run_dir.resume_checkpoint()
    distributed.on_main(run_dir.truncate_metrics, checkpoint_step(checkpoint))
    return str(checkpoint)


def checkpoint_step(checkpoint: Path) -> int:
    return int(checkpoint.name.rsplit("-", 1)[-1])


# ------------------------------------------------------------------------------- preference data
def pair_rows(cfg: RunConfig, run_dir: RunDir, resume: bool) -> tuple[list[dict], list[dict]]:
    """Preference pairs to train and validate on: the run's saved splits when resuming, else
    data.train split by data.val_fraction (or data.val)."""
    from tunelab.data import dataset
    from tunelab.data.split import row_key

    if resume:
        return _saved(run_dir, dataset.load_pairs)
    rows = dataset.load_pairs(cfg.data.train, cfg.data.columns)
    if cfg.data.val:
        return rows, dataset.load_pairs(cfg.data.val, cfg.data.columns)
    keys = [row_key(p["prompt"] + [{"role": "assistant", "content": p["chosen"]}]) for p in rows]
    return split(rows, keys, cfg.data.val_fraction, cfg.train.seed)


def prompt_rows(cfg: RunConfig) -> tuple[list[list[dict]], list[list[dict]]]:
    """The prompts of ``prompt_records``, as chat messages."""
    train, val = prompt_records(cfg)
    return [r["prompt"] for r in train], [r["prompt"] for r in val]


def prompt_records(cfg: RunConfig, required: tuple[str, ...] = ()) -> tuple[list[dict], list[dict]]:
    """Prompt rows ({"prompt": messages, **the row's other fields}) for policy optimisation, and
    held-out ones for its win rate (at most <stage>.eval_prompts, and at most a fifth of the data
    when taken from data.train); every row must carry the ``required`` fields. Any file a policy
    answers will do: prompt-only rows, chat prompts, conversations (up to their last answer),
    preference pairs. A resumed run splits its configured files again: the same seed gives the
    same split."""
    from tunelab.data import dataset
    from tunelab.data.split import row_key

    held_out = cfg.policy().eval_prompts
    rows = dataset.load_prompt_rows(cfg.data.train, required, cfg.data.columns)
    if cfg.data.val:
        return rows, dataset.load_prompt_rows(cfg.data.val, required, cfg.data.columns)[:held_out]
    hold = min(held_out, len(rows) // 5)
    return split(rows, [row_key(r["prompt"]) for r in rows], hold / len(rows), cfg.train.seed) if hold else (rows, [])


def _saved(run_dir: RunDir, loader) -> tuple[list, list]:
    val = run_dir.data / "val.jsonl"
    return loader(run_dir.data / "train.jsonl"), loader(val) if val.is_file() else []


def save_pairs(run_dir: RunDir, train: list[dict], val: list[dict]) -> None:
    distributed.on_main(_write_pairs, run_dir, train, val)


def _write_pairs(run_dir: RunDir, train: list[dict], val: list[dict]) -> None:
    from tunelab.data.load import write_jsonl

    write_jsonl(run_dir.data / "train.jsonl", train)
    if val:
        write_jsonl(run_dir.data / "val.jsonl", val)


def save_prompts(run_dir: RunDir, train: list[list[dict]], val: list[list[dict]]) -> None:
    save_pairs(run_dir, [{"messages": p} for p in train], [{"messages": p} for p in val])


def conversational_pairs(pairs: list[dict]):
    """Pairs as TRL's conversational preference dataset."""
    from datasets import Dataset

    return Dataset.from_list([{"prompt": p["prompt"], "chosen": [{"role": "assistant", "content": p["chosen"]}],
                               "rejected": [{"role": "assistant", "content": p["rejected"]}]} for p in pairs])

