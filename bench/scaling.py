"""Data-parallel scaling: the same `tunelab train` in 1 process and in N processes
(``--nproc-per-node N``, torchrun + DDP), the same global batch, side by side in one run.

Both sides run the real CLI as their own process tree, timed from spawn to exit; rows/s is
the global batch × steps over run.json's training-loop seconds. On a CPU
the processes share the machine's cores (train/distributed.py gives each cores / N threads),
so N processes cannot beat one on a small CPU: what this measures there is the cost of DDP
(gradient all-reduce over gloo, N copies of the model, N interpreters). On a GPU machine each
process gets its own GPU and the ratio is the scaling. The machine's 1-minute load before and
after rides along, and both sides' trained tokens, which must be equal (same global batch).

    .venv/bin/python bench/scaling.py [--model NAME] [--procs 2] [--max-steps 12] [--batch 8]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def side(model: str, data: Path, out: Path, procs: int, args) -> dict:
    cmd = [sys.executable, "-m", "tunelab", "train", "--model", model, "--data", str(data), "--out", str(out),
           "--max-steps", str(args.max_steps), "--batch-size", str(args.batch // procs), "--set", "train.logging_steps=1"]
    if procs > 1:
        cmd += ["--nproc-per-node", str(procs)]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "OMP_NUM_THREADS")}
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{procs} process(es) failed: {proc.stderr.strip().splitlines()[-1]}")
    summary = json.loads((out / "run.json").read_text())
    return {"processes": procs, "batch_per_process": args.batch // procs, "wall_s": round(wall, 1),
            "train_s": summary["train_seconds"],
            "rows_per_s": round(args.batch * summary["steps"] / max(summary["train_seconds"], 1e-9), 1),
            # run.json's real tokens: each process's own training batches, summed over processes
            "tokens": summary["real_tokens"], "tokens_per_s": summary["tokens_per_second"],
            "train_loss": summary["train_loss"], "world_size": summary["distributed"]["world_size"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None, help="model to train (default: the tiny random test model)")
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=8, help="global batch (rows per optimizer step, all processes)")
    args = parser.parse_args()
    from tests.conftest import MEMO_ROWS, build_tiny_model, write_jsonl

    load_before = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = args.model or str(build_tiny_model(work / "tiny"))
        data = write_jsonl(work / "train.jsonl", MEMO_ROWS * 16)
        one = side(model, data, work / "one", 1, args)
        many = side(model, data, work / "many", args.procs, args)
    print(json.dumps({"model": args.model or "tiny random Llama", "cores": len(os.sched_getaffinity(0)),
                      "global_batch": args.batch, "max_steps": args.max_steps, "one": one, "many": many,
                      "rows_per_s_ratio": round(many["rows_per_s"] / max(one["rows_per_s"], 1e-9), 2),
                      "load_1min_before": load_before,
                      "load_1min_after": round(os.getloadavg()[0], 2)}))


if __name__ == "__main__":
    main()
