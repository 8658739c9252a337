"""SFT throughput, whole process: TRL's SFTTrainer exactly as a CPU user gets it vs `tunelab train`.

TRL side: ``SFTConfig(use_cpu=True)`` with every other default kept (bf16 autocast, learning
rate 2e-5, activation checkpointing, padding to the longest row, no evaluation while training),
given conversational prompt/completion rows and tunelab's default LoRA config (same r, alpha,
dropout and target modules), then one evaluation for the final validation loss. tunelab side:
the real CLI, ``python -m tunelab train --data train.jsonl --val val.jsonl``, all defaults (it
evaluates about four times a run and checkpoints). Each side is its own process, timed from
spawn to exit; peak RSS comes from the kernel's accounting of that process.

Data: real, variable-length instruction rows built from text on this machine: questions about
Python standard-library functions answered by their own docstrings (``inspect.getdoc``), 400
train rows + 40 validation rows. One epoch, unless --max-steps cuts it short (say so when you
quote the numbers). Prints one JSON line; the machine's 1-minute load rides with each side.

    .venv/bin/python bench/train_throughput.py [--max-steps 16] [--set train.lr=...]

A lever (one setting tried against tunelab's defaults, as the performance issue asks "keep what
wins, with numbers"): ``--lever method.lora.dropout=0`` runs tunelab twice on the same rows
instead of TRL, defaults first, and reports both sides and the ratios.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _whole_process import loadavg, run_side  # noqa: E402

MODULES = ["json", "os", "os.path", "string", "textwrap", "itertools", "functools", "collections", "re", "math",
           "statistics", "datetime", "shutil", "pathlib", "random", "heapq", "bisect", "csv", "difflib", "fnmatch",
           "glob", "gzip", "hashlib", "zipfile", "tarfile", "urllib.parse", "html", "base64", "uuid", "copy",
           "inspect", "logging", "argparse", "subprocess", "tempfile", "contextlib", "operator", "decimal",
           "fractions", "calendar", "email.utils", "typing", "dataclasses", "enum", "struct", "shlex", "locale"]
TRAIN_ROWS, VAL_ROWS = 400, 40


def docstring_rows(n: int, seed: int = 0) -> list[dict]:
    rows, seen = [], set()
    for mod_name in MODULES:
        mod = importlib.import_module(mod_name)
        for name, obj in inspect.getmembers(mod):
            doc = inspect.getdoc(obj) if not name.startswith("_") and callable(obj) else None
            if doc and 15 <= len(doc.split()) <= 220 and doc not in seen:
                seen.add(doc)
                rows.append({"instruction": f"What does `{mod_name}.{name}` do in Python?", "output": doc})
    if len(rows) < n:
        sys.exit(f"only {len(rows)} docstring rows on this Python; add modules to MODULES")
    random.Random(seed).shuffle(rows)
    return rows[:n]


def run_trl(data: Path, max_steps: int, out: Path, trl_bf16: str = "default") -> dict:
    """TRL's SFTTrainer as a CPU user gets it: SFTConfig(use_cpu=True), nothing else changed."""
    from datasets import load_dataset
    from trl import SFTConfig, SFTTrainer

    from tunelab.methods.lora import LoraSettings, peft_config
    from tunelab.models.catalog import DEFAULT_MODEL
    from tunelab.models.load import load_model, load_tokenizer, resolve

    def to_pc(row):
        return {"prompt": [{"role": "user", "content": row["instruction"]}],
                "completion": [{"role": "assistant", "content": row["output"]}]}

    ds = load_dataset("json", data_files={"train": str(data / "train.jsonl"), "val": str(data / "val.jsonl")})
    ds = ds.map(to_pc, remove_columns=["instruction", "output"])
    ref = resolve(DEFAULT_MODEL)
    # --trl-bf16 off departs from TRL's default: only for a CPU without native bf16, where the
    # default's emulated bf16 would take hours; the output says which one ran
    extra = {} if trl_bf16 == "default" else {"bf16": False}
    # one epoch as tunelab runs (SFTConfig defaults to three); every other default kept
    args = SFTConfig(output_dir=str(out), use_cpu=True, max_steps=max_steps, num_train_epochs=1, **extra)
    trainer = SFTTrainer(model=load_model(ref), args=args, train_dataset=ds["train"], eval_dataset=ds["val"],
                         processing_class=load_tokenizer(ref), peft_config=peft_config(LoraSettings()))
    counter = TokenCounter()
    collate = trainer.data_collator
    trainer.data_collator = lambda batch: counter.count(collate(batch))
    metrics = trainer.train().metrics
    counter.training = False
    steps = trainer.state.global_step
    return {"train_seconds": metrics["train_runtime"], "steps": steps, "real_tokens": counter.tokens,
            "val_loss": trainer.evaluate()["eval_loss"],
            "settings": {"lr": args.learning_rate, "bf16": args.bf16, "padding_free": args.padding_free,
                         "gradient_checkpointing": args.activation_checkpointing,
                         "batch_size": args.per_device_train_batch_size}}


class TokenCounter:
    """Counts the non-padding tokens of every training batch the collator builds."""

    def __init__(self) -> None:
        self.tokens = 0
        self.training = True

    def count(self, batch):
        if self.training:
            mask = batch.get("attention_mask")
            self.tokens += int(mask.sum()) if mask is not None and mask.dim() == 2 else int(batch["input_ids"].numel())
        return batch


def tunelab_argv(data: Path, max_steps: int, out: Path, sets: list[str]) -> list[str]:
    argv = [sys.executable, "-m", "tunelab", "train", "--data", str(data / "train.jsonl"),
            "--val", str(data / "val.jsonl"), "--epochs", "1", "--out", str(out / "run")]
    if max_steps > 0:
        argv += ["--max-steps", str(max_steps)]
    return argv + [a for s in sets for a in ("--set", s)]


def tunelab_result(out: Path) -> dict:
    s = json.loads((out / "run" / "run.json").read_text())
    return {"train_seconds": s["train_seconds"], "steps": s["steps"], "real_tokens": s["real_tokens"],
            "val_loss": s["eval_loss"], "settings": {k: s.get(k) for k in (
                "bf16", "padding_free", "gradient_checkpointing", "base_dtype")}}


def peak_flops(dtype: str, n: int = 1024, reps: int = 3) -> float:
    """Matrix-product FLOP/s in ``dtype``; without native bf16 (AVX512-BF16/AMX) bf16 is emulated
    and orders of magnitude slower, which decides what TRL's bf16 default costs here."""
    import torch

    a, b = torch.randn(n, n, dtype=getattr(torch, dtype)), torch.randn(n, n, dtype=getattr(torch, dtype))
    a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - start)


def side_summary(side: dict) -> dict:
    r = side["result"]
    return {"process_s": side["process_seconds"], "train_s": round(r["train_seconds"], 1), "steps": r["steps"],
            "s_per_step": round(r["train_seconds"] / max(r["steps"], 1), 2), "real_tokens": r["real_tokens"],
            "tokens_per_s_process": round(r["real_tokens"] / side["process_seconds"], 1),
            "tokens_per_s_loop": round(r["real_tokens"] / r["train_seconds"], 1),
            "peak_rss_mb": side["peak_rss_mb"], "val_loss": round(r["val_loss"], 4),
            "load": [side["load_before"], side["load_after"]], "settings": r["settings"]}


def write_rows(data: Path) -> Path:
    """The benchmark's train.jsonl and val.jsonl in ``data`` (returned)."""
    rows = docstring_rows(TRAIN_ROWS + VAL_ROWS)
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:TRAIN_ROWS]))
    (data / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[TRAIN_ROWS:]))
    return data


def lever(max_steps: int, sets: list[str], levers: list[str]) -> dict:
    """tunelab's defaults against the same run with ``levers`` set, on the benchmark's rows."""
    sides = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = write_rows(Path(tmp))
        for name, extra in (("defaults", []), ("with_lever", levers)):
            out = data / name
            side = run_side(tunelab_argv(data, max_steps, out, sets + extra))
            side["result"] = tunelab_result(out)
            sides[name] = side_summary(side)
            print(f"# {name}: {sides[name]}", file=sys.stderr, flush=True)
    a, b = sides["defaults"], sides["with_lever"]
    return {"bench": "sft_lever", "lever": levers, "max_steps": max_steps, "sets": sets,
            "speedup_process": round(b["tokens_per_s_process"] / a["tokens_per_s_process"], 2),
            "speedup_loop": round(b["tokens_per_s_loop"] / a["tokens_per_s_loop"], 2),
            "rss_ratio": round(b["peak_rss_mb"] / a["peak_rss_mb"], 2), **sides}


def measure(max_steps: int, sets: list[str], src: str | None, trl_bf16: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        data = write_rows(Path(tmp))
        env = {"PYTHONPATH": src} if src else None  # another tunelab tree, e.g. a before/after comparison
        trl = run_side([sys.executable, __file__, "--side", "trl", "--data", tmp, "--max-steps", str(max_steps),
                        "--trl-bf16", trl_bf16], env)
        print(f"# trl: {trl}", file=sys.stderr, flush=True)
        tl = run_side(tunelab_argv(data, max_steps, data, sets), env)
        tl["result"] = tunelab_result(data)
        print(f"# tunelab: {tl}", file=sys.stderr, flush=True)
    return {"trl": side_summary(trl), "tunelab": side_summary(tl)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-steps", type=int, default=-1, help="cut the epoch short (-1: one full epoch)")
    parser.add_argument("--set", action="append", default=[], help="tunelab --set overrides, e.g. method.dropout=0")
    parser.add_argument("--trl-bf16", choices=["default", "off"], default="default",
                        help="off: TRL in fp32 (not its default), for CPUs without native bf16")
    parser.add_argument("--lever", action="append", default=[],
                        help="run tunelab defaults vs tunelab with this --set (instead of TRL)")
    parser.add_argument("--tunelab-src", help="run both sides on this tunelab source tree (PYTHONPATH)")
    parser.add_argument("--side", choices=["trl"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(run_trl(Path(args.data), args.max_steps, Path(tmp), args.trl_bf16)))
        return
    if args.lever:
        load = loadavg()
        print(json.dumps({**lever(args.max_steps, args.set, args.lever), "load_at_start": load}))
        return
    load = loadavg()
    from tunelab.device import cpu_has_bf16

    peaks = {d: round(peak_flops(d) / 1e9, 1) for d in ("float32", "bfloat16")}
    sides = measure(args.max_steps, args.set, args.tunelab_src, args.trl_bf16)
    trl, tl = sides["trl"], sides["tunelab"]
    from tunelab import cost

    achieved = cost.training_flops(0.135e9, tl["tokens_per_s_loop"], "lora")
    peak = peaks["bfloat16" if tl["settings"]["bf16"] else "float32"] * 1e9
    print(json.dumps({
        "bench": "sft", "rows": TRAIN_ROWS, "val_rows": VAL_ROWS, "max_steps": args.max_steps, "sets": args.set,
        "tunelab_src": args.tunelab_src or "working tree",
        "speedup_process": round(tl["tokens_per_s_process"] / trl["tokens_per_s_process"], 2),
        "speedup_loop": round(tl["tokens_per_s_loop"] / trl["tokens_per_s_loop"], 2),
        "rss_ratio": round(tl["peak_rss_mb"] / trl["peak_rss_mb"], 2),
        "cpu_native_bf16": cpu_has_bf16(), "trl_bf16": args.trl_bf16, "matmul_gflops": peaks,
        "load_at_peak": load, "tunelab_mfu": round(achieved / peak, 3),
        "trl": trl, "tunelab": tl,
    }))


if __name__ == "__main__":
    main()
