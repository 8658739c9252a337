"""Wall time of `tunelab eval` on the bundled model, as a user runs it (a fresh process each time,
imports and model loading included): rows of the shipped calendar set, base and tuned.

Four runs, one after the other: the task metrics alone (`--no-forgetting --no-bias`) and the
full evaluation (plus the general-knowledge and bias probes), each first with nothing reused
(`--fresh-base`) and then again, when the base model's side comes from the first run. Trains the
demo's LoRA run on the other shipped rows first unless --run is given. Prints one JSON line.

    .venv/bin/python bench/eval_speed.py [--run RUN] [--rows 100] [--out runs/bench-eval]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    from tunelab import api, resources
    from tunelab.config import build_config
    from tunelab.data import dataset
    from tunelab.io import atomic_write_text

    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, help="a tuned run to evaluate (default: train the demo's LoRA run)")
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-eval"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    shipped = dataset.load_conversations(resources.path("demo_calendar.jsonl"))
    rows, rest = shipped[: args.rows], shipped[args.rows:]
    data, train = args.out / "rows.jsonl", args.out / "train.jsonl"
    for path, part in ((data, rows), (train, rest)):
        atomic_write_text(path, "".join(json.dumps({"messages": r}) + "\n" for r in part))
    run = args.run
    if run is None:  # the demo's recipe on the other shipped rows, so the evaluated rows are held out
        run = args.out / "run"
        if not (run / "run.json").is_file():
            api.train(build_config(overrides=api.DEMO_SETTINGS | {"data.train": str(train)}), out=run)

    def wall(*flags: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "tunelab", "eval", str(run), "--data", str(data), "--json", *flags],
                       check=True, stdout=subprocess.DEVNULL)
        return round(time.perf_counter() - start, 1)

    task = ("--no-forgetting", "--no-bias")
    result = {"rows": len(rows), "run": str(run)}
    result["task_s"] = wall(*task, "--fresh-base")
    result["task_base_reused_s"] = wall(*task)
    result["full_s"] = wall("--fresh-base")
    result["full_base_reused_s"] = wall()
    result["eval"] = {k: v for k, v in json.loads((run / "eval.json").read_text()).items()
                      if k in ("base", "tuned", "base_reused")}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
