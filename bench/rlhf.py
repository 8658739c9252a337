"""RLHF on the shipped preference data (concise vs rambling answers), on the bundled model.

Runs `tunelab demo --rlhf` (the `tunelab rlhf` pipeline: SFT on the chosen answers -> reward
model -> PPO from the SFT run), then RLOO from the same SFT and reward runs, and prints one JSON line: the reward
model's held-out pairwise accuracy, each policy's win rate over the SFT model under the
reward model on held-out prompts, KL to the SFT model, and wall time per stage.

    .venv/bin/python bench/rlhf.py [--out runs/bench-rlhf] [--sft-steps 10] [--reward-steps 30] [--ppo-steps 12]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path


def main() -> None:
    from tunelab import api, resources
    from tunelab.config import build_config

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="runs/bench-rlhf")
    parser.add_argument("--sft-steps", type=int, default=10)
    parser.add_argument("--reward-steps", type=int, default=30)
    parser.add_argument("--ppo-steps", type=int, default=12)
    parser.add_argument("--rloo-steps", type=int, default=12)
    parser.add_argument("--lr", type=float, default=3e-4, help="RLOO's learning rate (PPO's is the demo's, 3e-4)")
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    pairs = resources.path("prefs_concise.jsonl")
    times = {}
    start = time.perf_counter()
    runs = api.demo_rlhf(out / "pipeline", steps=(args.sft_steps, args.reward_steps, args.ppo_steps))
    for name, path in runs.items():
        times[name] = api.open_run(path).summary().get("train_seconds")
    pipeline_seconds = time.perf_counter() - start
    cfg = build_config(overrides={"data.train": str(pairs), "train.stage": "rloo", "rloo.reward_model": str(runs["reward"]),
                                  "rloo.init": str(runs["sft"]), "train.max_steps": args.rloo_steps, "train.lr": args.lr},
                       sets=["rloo.rollout_batch=16", "rloo.num_generations=4", "rloo.max_new_tokens=48", "rloo.eval_prompts=40"])
    rloo = api.train(cfg, out=out / "rloo").path
    times["rloo"] = api.open_run(rloo).summary().get("train_seconds")
    result = {"pipeline_seconds": round(pipeline_seconds, 1), "train_seconds": times}
    result["reward_model"] = api.open_run(runs["reward"]).summary()["held_out"]
    for name, path in (("ppo", runs["ppo"]), ("rloo", rloo)):
        summary = api.open_run(path).summary()
        ev = summary["held_out"]
        result[name] = {k: ev.get(k) for k in ("win_rate", "mean_reward", "reference_mean_reward", "kl_to_reference",
                                              "prompts")}
        result[name].update(first_reward=summary.get("first_reward"), last_reward=summary.get("last_reward"),
                            sample=ev.get("samples", [None])[0])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
