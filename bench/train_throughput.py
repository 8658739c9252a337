"""Training throughput: TRL's SFTTrainer with its defaults vs `tunelab train` with its defaults.

Same data (a few hundred real, variable-length instruction rows: questions about Python
standard-library functions answered by their own docstrings), same model (the bundled
SmolLM2-135M), same LoRA config (r=8, alpha 16, all linear layers), same number of optimizer
steps of 8 rows each. Each side runs in its own process so peak RSS is its own. Also measures
this machine's bf16 matmul peak to report MFU. Prints one JSON line.

    .venv/bin/python bench/train_throughput.py [--steps 12]
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODULES = ["json", "os", "os.path", "string", "textwrap", "itertools", "functools", "collections", "re", "math",
           "statistics", "datetime", "shutil", "pathlib", "random", "heapq", "bisect", "csv", "difflib", "fnmatch",
           "glob", "gzip", "hashlib", "zipfile", "tarfile", "urllib.parse", "html", "base64", "uuid", "copy"]


def docstring_rows(n: int = 400, seed: int = 0) -> list[dict]:
    rows = []
    for mod_name in MODULES:
        mod = importlib.import_module(mod_name)
        for name, obj in inspect.getmembers(mod):
            doc = inspect.getdoc(obj) if not name.startswith("_") and callable(obj) else None
            if doc and 15 <= len(doc.split()) <= 220:
                rows.append({"instruction": f"What does `{mod_name}.{name}` do in Python?", "output": doc})
    rng = random.Random(seed)
    rng.shuffle(rows)
    return rows[:n]


def lora_config():
    from peft import LoraConfig

    return LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM")


def run_trl(train: Path, val: Path, steps: int, out: Path) -> dict:
    """TRL's SFTTrainer with its defaults, given conversational prompt/completion rows."""
    from datasets import load_dataset
    from trl import SFTConfig, SFTTrainer

    from tunelab.models.catalog import DEFAULT_MODEL
    from tunelab.models.load import load_model, load_tokenizer, resolve

    def to_pc(row):
        return {"prompt": [{"role": "user", "content": row["instruction"]}],
                "completion": [{"role": "assistant", "content": row["output"]}]}

    ds = load_dataset("json", data_files={"train": str(train), "val": str(val)})
    ds = ds.map(to_pc, remove_columns=["instruction", "output"])
    ref = resolve(DEFAULT_MODEL)
    # TRL's bf16 default refuses to start on a machine without a GPU unless use_cpu is set;
    # the baseline is fp32 on the CPU, as TRL runs when told to use the CPU without bf16.
    args = SFTConfig(output_dir=str(out), max_steps=steps, report_to="none", save_strategy="no",
                     eval_strategy="no", disable_tqdm=True, seed=42, data_seed=42, use_cpu=True, bf16=False)
    trainer = SFTTrainer(model=load_model(ref), args=args, train_dataset=ds["train"], eval_dataset=ds["val"],
                         processing_class=load_tokenizer(ref), peft_config=lora_config())
    counter = TokenCounter()
    trainer.add_callback(counter.callback())
    collate = trainer.data_collator
    trainer.data_collator = lambda batch: counter.count(collate(batch))
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "real_tokens": counter.tokens, "val_loss": trainer.evaluate()["eval_loss"],
            "settings": {"lr": args.learning_rate, "bf16": args.bf16,
                         "gradient_checkpointing": args.activation_checkpointing,
                         "padding_free": args.padding_free, "batch_size": args.per_device_train_batch_size}}


def run_tunelab(train: Path, val: Path, steps: int, out: Path) -> dict:
    from tunelab import api
    from tunelab.config import build_config

    # no evaluation or checkpoint inside the timed loop (the TRL side has none either); the
    # validation loss is computed after training, as on the TRL side
    cfg = build_config(overrides={"data.train": str(train), "data.val": str(val), "train.max_steps": steps},
                       sets=[f"train.eval_steps={steps + 1}", f"train.save_steps={steps + 1}"])
    run = api.train(cfg, out=out / "run")
    s = run.summary()
    return {"seconds": s["train_seconds"], "real_tokens": s["real_tokens"], "val_loss": s["eval_loss"],
            "settings": {"lr": cfg.train.lr, "bf16": s["bf16"], "fast": cfg.train.fast,
                         "gradient_checkpointing": s.get("gradient_checkpointing"), "batch_size": cfg.train.batch_size}}


class TokenCounter:
    """Counts the non-padding tokens of every training batch the collator builds."""

    def __init__(self) -> None:
        self.tokens = 0
        self.training = True

    def count(self, batch):
        if self.training:
            mask = batch.get("attention_mask")
            self.tokens += int(mask.sum()) if mask is not None else int(batch["input_ids"].numel())
        return batch

    def callback(self):
        from transformers import TrainerCallback

        counter = self

        class StopCounting(TrainerCallback):
            def on_train_end(self, *a, **k):
                counter.training = False

        return StopCounting()


def bf16_peak_flops(n: int = 2048, reps: int = 10) -> float:
    import torch

    a, b = torch.randn(n, n, dtype=torch.bfloat16), torch.randn(n, n, dtype=torch.bfloat16)
    a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--side", choices=["trl", "tunelab"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(args.data)
            fn = run_trl if args.side == "trl" else run_tunelab
            result = fn(data / "train.jsonl", data / "val.jsonl", args.steps, Path(tmp))
        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory() as tmp:
        rows = docstring_rows()
        peak = bf16_peak_flops()  # measured first, on an idle machine
        Path(tmp, "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:-40]))
        Path(tmp, "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[-40:]))
        sides = {}
        for side in ("trl", "tunelab"):
            proc = subprocess.run([sys.executable, __file__, "--side", side, "--data", tmp, "--steps",
                                   str(args.steps)], capture_output=True, text=True)
            if proc.returncode != 0:
                sys.exit(f"{side} failed:\n{proc.stderr[-3000:]}")
            sides[side] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"# {side}: {sides[side]}", file=sys.stderr, flush=True)
    from tunelab import cost

    tps = {k: v["real_tokens"] / v["seconds"] for k, v in sides.items()}
    achieved = cost.training_flops(0.135e9, tps["tunelab"], "lora")
    print(json.dumps({
        "steps": args.steps, "rows": len(rows),
        "trl_tokens_per_s": round(tps["trl"], 1), "tunelab_tokens_per_s": round(tps["tunelab"], 1),
        "speedup": round(tps["tunelab"] / tps["trl"], 2),
        "trl_peak_rss_mb": sides["trl"]["peak_rss_mb"], "tunelab_peak_rss_mb": sides["tunelab"]["peak_rss_mb"],
        "rss_ratio": round(sides["tunelab"]["peak_rss_mb"] / sides["trl"]["peak_rss_mb"], 2),
        "trl_val_loss": round(sides["trl"]["val_loss"], 4), "tunelab_val_loss": round(sides["tunelab"]["val_loss"], 4),
        "bf16_peak_gflops": round(peak / 1e9, 1), "tunelab_mfu": round(achieved / peak, 3),
        "trl_settings": sides["trl"]["settings"], "tunelab_settings": sides["tunelab"]["settings"],
    }))


if __name__ == "__main__":
    main()
