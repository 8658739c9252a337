"""The experiments behind `auto` hyperparameters (docs/defaults.md): short LoRA runs on the
bundled model over a grid of learning rates and ranks on one real task (bench/quality_tasks.py),
recording the validation-loss curve of each, so the best learning rate and the epoch at which
validation loss bottoms out can be read off.

    .venv/bin/python bench/auto_rules.py [--task debian-synopsis] [--rows 64] [--epochs 3]
        [--grid lora:1e-4:16,lora:3e-4:16,lora:1e-3:16] [--method-grid ...]

Prints one JSON line per run as it finishes, then a summary line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def one_run(method: str, lr: float, r: int, train: Path, val: Path, epochs: float, rows: int, batch: int,
            max_length: int, work: Path) -> dict:
    from tunelab import api
    from tunelab.config import build_config

    steps_per_epoch = -(-rows // batch)
    sets = [f"train.lr={lr}", f"train.batch_size={batch}", f"train.epochs={epochs}",
            f"train.eval_steps={max(1, steps_per_epoch // 2)}", f"data.max_length={max_length}",
            "train.logging_steps=1"]
    if method in ("lora", "dora"):
        sets += [f"method.{method}.r={r}", f"method.{method}.alpha={2 * r}"]
    cfg = build_config(overrides={"method.name": method, "data.train": str(train), "data.val": str(val)}, sets=sets)
    start = time.perf_counter()
    run = api.train(cfg, out=work / f"{method}-{lr}-{r}")
    curve = [(m["step"], round(m["eval_loss"], 4)) for m in run.read_metrics() if "eval_loss" in m]
    best_step, best = min(curve, key=lambda c: c[1])
    return {"method": method, "lr": lr, "r": r, "rows": rows, "batch": batch, "steps_per_epoch": steps_per_epoch,
            "curve": curve, "best_eval_loss": best, "best_epoch": round(best_step / steps_per_epoch, 2),
            "first_eval_loss": curve[0][1], "wall_s": round(time.perf_counter() - start, 1),
            "tokens_per_second": run.summary()["tokens_per_second"]}


def main() -> None:
    from quality_tasks import split

    from tunelab.data.load import write_jsonl

    parser = argparse.ArgumentParser()
    parser.add_argument("--task", default="debian-synopsis")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--val-rows", type=int, default=32)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=192)
    parser.add_argument("--grid", default="lora:1e-4:16,lora:3e-4:16,lora:1e-3:16",
                        help="method:lr:rank items, comma-separated")
    args = parser.parse_args()
    train, test = split(args.task, args.rows, args.val_rows, seed=1)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_jsonl(work / "train.jsonl", train)
        write_jsonl(work / "val.jsonl", test)
        for item in args.grid.split(","):
            method, lr, r = item.split(":")
            result = one_run(method, float(lr), int(r), work / "train.jsonl", work / "val.jsonl", args.epochs,
                             len(train), args.batch, args.max_length, work)
            results.append(result)
            print(json.dumps({"task": args.task, **result}), flush=True)
    best = min(results, key=lambda r: r["best_eval_loss"])
    print(json.dumps({"task": args.task, "best": {k: best[k] for k in ("method", "lr", "r", "best_epoch",
                                                                        "best_eval_loss")}}), flush=True)


if __name__ == "__main__":
    main()
