"""Compare every fine-tuning method on the bundled model: same data, same steps.

Each method runs in its own process (so peak RSS is its own) through `tunelab.api.train`, on
the first 200 rows of the demo's calendar dataset with a fixed 32-row validation set.
Prints a markdown table, then one JSON line with every number.

    .venv/bin/python bench/methods.py [--steps 20] [--methods lora,full,...]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Learning rates per method: adapters with few parameters need larger steps.
LR = {"full": 5e-5, "lora": 4e-4, "dora": 4e-4, "qlora": 4e-4, "ia3": 3e-3, "adapter": 1e-3,
      "prefix": 1e-2, "prompt": 3e-2}


def one(method: str, steps: int, work: Path) -> dict:
    from tunelab import api, resources
    from tunelab.config import build_config
    from tunelab.data.load import read_rows, write_jsonl

    rows = [r.obj for r in read_rows(resources.path("demo_calendar.jsonl"))]
    write_jsonl(work / "train.jsonl", rows[:200])
    write_jsonl(work / "val.jsonl", rows[200:232])
    cfg = build_config(overrides={"method.name": method, "data.train": str(work / "train.jsonl"),
                                  "data.val": str(work / "val.jsonl"), "train.max_steps": steps},
                       sets=[f"train.lr={LR[method]}", "train.batch_size=4", f"train.eval_steps={steps}",
                             f"train.save_steps={steps}"])
    start = time.perf_counter()
    run = api.train(cfg, out=work / "run")
    s = run.summary()
    return {
        "method": method,
        "lr": LR[method],
        "trainable": s["trainable"]["trainable"],
        "trainable_percent": s["trainable"]["percent"],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "model_mb": s["trainable"]["model_mb"],
        "tokens_per_s": s["tokens_per_second"],
        "val_loss": s["eval_loss"],
        "wall_s": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--methods", default=",".join(LR))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(one(args.one, args.steps, Path(tmp))))
        return
    results = []
    for method in args.methods.split(","):
        proc = subprocess.run([sys.executable, __file__, "--one", method, "--steps", str(args.steps)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            results.append({"method": method, "error": proc.stderr.strip().splitlines()[-1]})
        else:
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(f"# {method}: {results[-1]}", file=sys.stderr, flush=True)
    print(f"| method | trainable | trainable % | model in memory (MB) | peak RSS (MB) | tokens/s | "
          f"val loss after {args.steps} steps | lr |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        if "error" in r:
            print(f"| {r['method']} | error: {r['error']} | | | | | | |")
        else:
            print(f"| {r['method']} | {r['trainable']:,} | {r['trainable_percent']:.3f} | {r['model_mb']:,} | "
                  f"{r['peak_rss_mb']:,} | "
                  f"{r['tokens_per_s']} | {r['val_loss']} | {r['lr']:g} |")
    print(json.dumps({"steps": args.steps, "results": results}))


if __name__ == "__main__":
    main()
