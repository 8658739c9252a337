"""Quality at equal wall time: tunelab's defaults against TRL's, on real tasks.

For each task of bench/quality_tasks.py (Debian package synopses and sections from
/var/lib/dpkg/status, Python standard-library docstring summaries), split into train and test
rows:

1. `tunelab train --data train.jsonl --time-budget BUDGET` (every other setting left at its
   default: auto epochs/lr/batch/rank, best checkpoint); its whole process is timed.
2. TRL's `SFTTrainer` at its defaults (`SFTConfig(use_cpu=True)`, LoRA r=16 through
   `LoraConfig(r=16)`, prompt-completion rows so the loss is on the answers), stopped when its
   whole process has run as long as tunelab's did. TRL's bf16 default follows the host: on a CPU
   without native bf16 it runs in fp32 (emulated bf16 is ~100x slower; docs/performance.md).
3. Both evaluated by `tunelab eval RUN --data test.jsonl --no-bias --json` on the same rows:
   ROUGE-L, exact match and loss on the test rows, and the general-knowledge forgetting probes
   (QA accuracy, prose perplexity), for the base model, TRL and tunelab.

Prints a markdown table and one JSON line, and writes both to --out.

    .venv/bin/python bench/quality.py [--time-budget 10m] [--tasks debian-synopsis,...]
        [--train-rows 300] [--test-rows 60] [--probe-questions 100] [--model NAME] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TUNELAB = [sys.executable, "-m", "tunelab"]


def run_tunelab(task_dir: Path, model: str, budget: str, probe_questions: int) -> tuple[Path, float]:
    out = task_dir / "tunelab"
    cmd = TUNELAB + ["train", "--data", str(task_dir / "train.jsonl"), "--model", model, "--time-budget", budget,
                     "--out", str(out), "--set", f"eval.probe_questions={probe_questions}"]
    start = time.monotonic()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return out, time.monotonic() - start


def run_trl(task_dir: Path, model: str, seconds: float, probe_questions: int) -> Path:
    out = task_dir / "trl"
    subprocess.run([sys.executable, str(Path(__file__).resolve()), "--trl-one", str(task_dir), "--model", model,
                    "--seconds", str(seconds), "--probe-questions", str(probe_questions)], check=True, cwd=ROOT)
    return out


def trl_one(task_dir: Path, model: str, seconds: float, probe_questions: int) -> None:
    """TRL at its defaults, stopped when this process has run ``seconds``; saved as a run
    directory that `tunelab eval` reads (config.yaml, adapter/, run.json)."""
    started = time.monotonic()
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from tunelab.config import build_config
    from tunelab.data import dataset
    from tunelab.device import use_bf16
    from tunelab.io import atomic_write_json, atomic_write_text
    from tunelab.models.load import load_tokenizer, resolve

    ref = resolve(model)
    tokenizer = load_tokenizer(ref)
    rows = dataset.load_conversations(task_dir / "train.jsonl")
    data = Dataset.from_list([{"prompt": r[:-1], "completion": r[-1:]} for r in rows])
    save_reserve = 5.0  # the adapter save after the loop

    class StopOnTime(TrainerCallback):
        def __init__(self) -> None:
            self.last = time.monotonic()

        def on_step_end(self, args, state, control, **kwargs):
            now = time.monotonic()
            step_s, self.last = now - self.last, now
            if now - started + step_s + save_reserve > seconds:
                control.should_training_stop = True

    out = task_dir / "trl"
    args = SFTConfig(output_dir=str(out / "checkpoints"), use_cpu=True, bf16=use_bf16("auto"), report_to="none",
                     save_strategy="no")
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(ref.source), args=args, train_dataset=data,
                         processing_class=tokenizer, peft_config=LoraConfig(r=16, task_type="CAUSAL_LM"),
                         callbacks=[StopOnTime()])
    result = trainer.train()
    trainer.model.save_pretrained(out / "adapter")
    tokenizer.save_pretrained(out / "adapter")
    cfg = build_config(overrides={"model.name": model, "method.name": "lora", "eval.probe_questions": probe_questions},
                       sets=["method.lora.r=16", "method.lora.alpha=8"])
    atomic_write_text(out / "config.yaml", cfg.to_yaml())
    atomic_write_json(out / "run.json", {
        "model": ref.name, "method": "lora", "stage": "sft", "steps": trainer.state.global_step,
        "train_loss": round(float(result.training_loss), 4), "train_seconds": round(time.monotonic() - started, 1),
        "eval_loss": None, "settings": {"lr": args.learning_rate, "epochs": args.num_train_epochs,
                                        "batch_size": args.per_device_train_batch_size, "bf16": args.bf16}})


def evaluate(run: Path, test: Path, limit: int | None) -> dict:
    cmd = TUNELAB + ["eval", str(run), "--data", str(test), "--no-bias", "--json"]
    if limit:
        cmd += ["--limit", str(limit)]
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return json.loads((run / "eval.json").read_text())


def side(scores: dict, forgetting: dict) -> dict:
    return {"rougeL": round(scores["rougeL"], 4), "exact_match": round(scores["exact_match"], 4),
            "loss": round(scores["loss"], 4), "qa_accuracy": forgetting["qa_accuracy"],
            "prose_perplexity": round(forgetting["prose_perplexity"], 3)}


def one_task(task: str, args, work: Path) -> dict:
    from quality_tasks import split

    from tunelab.data.load import write_jsonl

    task_dir = work / task
    task_dir.mkdir(parents=True, exist_ok=True)
    train, test = split(task, args.train_rows, args.test_rows, seed=0)
    write_jsonl(task_dir / "train.jsonl", train)
    write_jsonl(task_dir / "test.jsonl", test)
    tuned_run, wall = run_tunelab(task_dir, args.model, args.time_budget, args.probe_questions)
    trl_run = run_trl(task_dir, args.model, wall, args.probe_questions)
    ours = evaluate(tuned_run, task_dir / "test.jsonl", None)
    theirs = evaluate(trl_run, task_dir / "test.jsonl", None)
    summary = json.loads((tuned_run / "run.json").read_text())
    trl_summary = json.loads((trl_run / "run.json").read_text())
    return {"task": task, "train_rows": len(train), "test_rows": len(test), "wall_seconds": round(wall, 1),
            "base": side(ours["base"], ours["forgetting"]["base"]),
            "trl": {**side(theirs["tuned"], theirs["forgetting"]["tuned"]), "steps": trl_summary["steps"],
                    "process_seconds": trl_summary["train_seconds"]},
            "tunelab": {**side(ours["tuned"], ours["forgetting"]["tuned"]), "steps": summary["steps"],
                        "auto": summary.get("auto"), "best_step": summary.get("best_step"),
                        "time_budget": summary.get("time_budget")}}


def table(results: list[dict]) -> str:
    lines = ["| task | side | ROUGE-L | exact match | loss | general QA acc. | prose ppl | steps |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        for name in ("base", "trl", "tunelab"):
            s = r[name]
            lines.append(f"| {r['task']} | {name} | {s['rougeL']:.3f} | {s['exact_match']:.3f} | {s['loss']:.3f} | "
                         f"{s['qa_accuracy']:.2f} | {s['prose_perplexity']:.1f} | {s.get('steps', '')} |")
    return "\n".join(lines)


def main() -> None:
    sys.path.insert(0, str(HERE))
    from quality_tasks import TASKS

    from tunelab.models.catalog import DEFAULT_MODEL

    parser = argparse.ArgumentParser()
    parser.add_argument("--time-budget", default="10m", help="tunelab's --time-budget; TRL gets the same wall time")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--train-rows", type=int, default=300)
    parser.add_argument("--test-rows", type=int, default=60)
    parser.add_argument("--probe-questions", type=int, default=100)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--out", default="runs/bench-quality")
    parser.add_argument("--trl-one", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.trl_one:
        trl_one(Path(args.trl_one), args.model, args.seconds, args.probe_questions)
        return
    work = Path(args.out).resolve()
    if work.exists() and any(work.iterdir()):
        raise SystemExit(f"{work}: already exists and is not empty; pass another --out")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    results = [one_task(task, args, work) for task in args.tasks.split(",")]
    report = {"time_budget": args.time_budget, "model": args.model, "load_average": os.getloadavg()[0],
              "results": results}
    (work / "quality.md").write_text(table(results) + "\n")
    (work / "quality.json").write_text(json.dumps(report, indent=1) + "\n")
    print(table(results))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
