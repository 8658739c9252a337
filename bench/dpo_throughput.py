"""DPO throughput and memory, whole process: TRL's DPOTrainer as a CPU user gets it vs
`tunelab train --stage dpo`, on the same preference pairs.

TRL side: ``DPOConfig(use_cpu=True)`` with every other default kept (bf16 autocast, activation
checkpointing, reference = the base with the adapter off), conversational pairs and tunelab's
default LoRA config, then one evaluation on the held-out pairs (what a user reads at the end).
tunelab side: the real CLI with its defaults, evaluation included (held-out preference accuracy
and margin land in run.json). Each side is its own process, timed spawn to exit; peak RSS from
the kernel's accounting of that process. Both sides see the same pairs in the same order (seed
42, the same sampler), so their training tokens are the same; TRL's are counted in its collator.

Data: the pairs shipped in tunelab/resources/prefs_concise.jsonl (a concise chosen answer and a
padded, rambling rejected one), first 240: 216 to train, 24 held out. --max-steps defaults to 3
steps of 8 pairs (a short run; say so when quoting). Prints one JSON line with the load.

    .venv/bin/python bench/dpo_throughput.py [--max-steps 3] [--pairs 240] [--trl-bf16 off]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _whole_process import loadavg, run_side  # noqa: E402

HELD_OUT = 24


def run_trl(data: Path, max_steps: int, out: Path, trl_bf16: str = "default") -> dict:
    """TRL's DPOTrainer as a CPU user gets it: DPOConfig(use_cpu=True), nothing else changed
    (``trl_bf16="off"``: fp32 instead of its bf16 default; the output says which ran)."""
    from trl import DPOConfig, DPOTrainer

    from tunelab.data.dataset import load_pairs
    from tunelab.methods.lora import LoraSettings, peft_config
    from tunelab.models.catalog import DEFAULT_MODEL
    from tunelab.models.load import load_model, load_tokenizer, resolve
    from tunelab.train.setup import conversational_pairs

    ref = resolve(DEFAULT_MODEL)
    # --trl-bf16 off departs from TRL's default: only for a CPU without native bf16, where the
    # default's emulated bf16 would take hours
    extra = {} if trl_bf16 == "default" else {"bf16": False}
    args = DPOConfig(output_dir=str(out), use_cpu=True, max_steps=max_steps, **extra)
    trainer = DPOTrainer(model=load_model(ref), args=args, processing_class=load_tokenizer(ref),
                         train_dataset=conversational_pairs(load_pairs(data / "train.jsonl")),
                         eval_dataset=conversational_pairs(load_pairs(data / "val.jsonl")),
                         peft_config=peft_config(LoraSettings()))
    tokens = {"n": 0, "training": True}
    collate = trainer.data_collator

    def counting(batch):
        out = collate(batch)
        if tokens["training"]:
            tokens["n"] += int(out["attention_mask"].sum())
        return out

    trainer.data_collator = counting
    metrics = trainer.train().metrics
    tokens["training"] = False
    final = trainer.evaluate()
    return {"train_seconds": metrics["train_runtime"], "steps": trainer.state.global_step, "real_tokens": tokens["n"],
            "preference_accuracy": final.get("eval_rewards/accuracies"), "eval_loss": final.get("eval_loss"),
            "settings": {"lr": args.learning_rate, "bf16": args.bf16, "beta": args.beta,
                         "gradient_checkpointing": args.activation_checkpointing,
                         "precompute_ref_log_probs": args.precompute_ref_log_probs}}


def tunelab_result(out: Path) -> dict:
    s = json.loads((out / "run.json").read_text())
    evals = sum(1 for line in (out / "metrics.jsonl").read_text().splitlines() if '"eval_loss"' in line)
    return {"train_seconds": s["train_seconds"], "steps": s["steps"], "eval_loss": s["eval_loss"],
            "preference_accuracy": s["held_out"]["preference_accuracy"], "evaluations_logged": evals}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-steps", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=240)
    parser.add_argument("--trl-bf16", choices=["default", "off"], default="default",
                        help="off: TRL in fp32, for a CPU without native bf16 (not TRL's default)")
    parser.add_argument("--side", choices=["trl"], help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(run_trl(Path(args.data), args.max_steps, Path(tmp), args.trl_bf16)))
        return
    from tunelab import resources

    lines = resources.path("prefs_concise.jsonl").read_text().splitlines()[:args.pairs]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        (data / "train.jsonl").write_text("\n".join(lines[:-HELD_OUT]) + "\n")
        (data / "val.jsonl").write_text("\n".join(lines[-HELD_OUT:]) + "\n")
        trl = run_side([sys.executable, __file__, "--side", "trl", "--data", tmp, "--max-steps", str(args.max_steps),
                        "--trl-bf16", args.trl_bf16])
        print(f"# trl: {trl}", file=sys.stderr, flush=True)
        tl = run_side([sys.executable, "-m", "tunelab", "train", "--stage", "dpo", "--data", str(data / "train.jsonl"),
                       "--val", str(data / "val.jsonl"), "--max-steps", str(args.max_steps), "--out", str(data / "run")])
        tl["result"] = tunelab_result(data / "run")
        print(f"# tunelab: {tl}", file=sys.stderr, flush=True)
    t, u = trl["result"], tl["result"]
    tokens = t["real_tokens"]  # the same pairs in the same order on both sides
    print(json.dumps({
        "bench": "dpo", "pairs": args.pairs - HELD_OUT, "held_out": HELD_OUT, "max_steps": args.max_steps,
        "trl_bf16": args.trl_bf16,
        "speedup_training": round(t["train_seconds"] / u["train_seconds"], 2),
        "speedup_process": round(trl["process_seconds"] / tl["process_seconds"], 2),
        "rss_ratio": round(tl["peak_rss_mb"] / trl["peak_rss_mb"], 2),
        "trl": {**t, "process_s": trl["process_seconds"], "peak_rss_mb": trl["peak_rss_mb"],
                "tokens_per_s_training": round(tokens / t["train_seconds"], 1), "load": [trl["load_before"], trl["load_after"]]},
        "tunelab": {**u, "process_s": tl["process_seconds"], "peak_rss_mb": tl["peak_rss_mb"],
                    "tokens_per_s_training": round(tokens / u["train_seconds"], 1), "load": [tl["load_before"], tl["load_after"]]},
        "load_at_end": loadavg(),
    }))


if __name__ == "__main__":
    main()
