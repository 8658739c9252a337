"""Does blending general data into training reduce catastrophic forgetting?

Full fine-tuning of the bundled model at a high learning rate on the calendar task, twice:
(a) calendar rows only, (b) the same rows with 20% general data blended in: the base model's
own answers to everyday requests, sampled at temperature 1 so they follow the model's own
distribution (greedy answers are sharper than the model and pull perplexity up). The general
data says nothing new: it only holds the model near where it was. Both runs see the same number of steps; both are evaluated by
`tunelab eval` on the general-knowledge probes. Prints one JSON line.

    .venv/bin/python bench/blend_forgetting.py [--steps 40] [--lr 2e-4]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

TOPICS = ["sleep", "cooking rice", "saving money", "learning a language", "running", "gardening", "reading more",
          "staying focused", "drinking water", "writing an email", "making friends", "taking photos",
          "cleaning a kitchen", "riding a bicycle", "planting tomatoes", "packing for a trip", "studying for a test",
          "keeping a plant alive", "walking a dog", "baking bread"]
ASKS = ["Give me one practical tip about {t}.", "Explain why {t} matters, in two sentences.",
        "What is a common mistake people make with {t}?", "Write a short friendly sentence about {t}."]


def main() -> None:
    from tunelab import api, resources
    from tunelab.config import build_config
    from tunelab.data.load import read_rows, write_jsonl
    from tunelab.data.tokens import encode_prompt
    from tunelab.inference.generate import generate
    from tunelab.models.catalog import DEFAULT_MODEL
    from tunelab.models.load import load_model, load_tokenizer, resolve

    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--share", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rows = [r.obj for r in read_rows(resources.path("demo_calendar.jsonl"))]
    task, test = rows[:240], rows[-30:]
    ref = resolve(DEFAULT_MODEL)
    tok = load_tokenizer(ref)
    base = load_model(ref, "bfloat16")
    questions = [a.format(t=t) for t in TOPICS for a in ASKS]
    answers = generate(base, tok, [encode_prompt(tok, [{"role": "user", "content": q}]) for q in questions],
                       max_new_tokens=96, batch_size=40, temperature=1.0, seed=args.seed)
    general = [{"instruction": q, "output": a} for q, a in zip(questions, answers) if a.strip()]
    n_general = round(args.share / (1 - args.share) * len(task))
    out = {"steps": args.steps, "lr": args.lr, "share": args.share, "seed": args.seed, "general_rows": min(n_general, len(general))}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_jsonl(tmp / "test.jsonl", test)
        write_jsonl(tmp / "plain.jsonl", task)
        write_jsonl(tmp / "blend.jsonl", task + general[:n_general])
        for name in ("plain", "blend"):
            cfg = build_config(overrides={"method.name": "full", "data.train": str(tmp / f"{name}.jsonl"),
                                          "train.max_steps": args.steps, "train.lr": args.lr},
                               sets=["train.batch_size=4", f"train.eval_steps={args.steps}",
                                     f"train.save_steps={args.steps}", f"train.seed={args.seed}"])
            run = api.train(cfg, out=tmp / name)
            result = api.evaluate(run.path, tmp / "test.jsonl", bias=False)
            fg = result["forgetting"]
            out["base_qa_accuracy"] = fg["base"]["qa_accuracy"]
            out["base_prose_perplexity"] = fg["base"]["prose_perplexity"]
            out[name] = {"qa_accuracy": fg["tuned"]["qa_accuracy"], "prose_perplexity": fg["tuned"]["prose_perplexity"],
                         "qa_accuracy_drop": fg["delta"]["qa_accuracy_drop"],
                         "prose_perplexity_ratio": fg["delta"]["prose_perplexity_ratio"],
                         "task_rougeL": result["tuned"]["rougeL"]}
    out["blend_reduces_forgetting"] = (out["blend"]["qa_accuracy_drop"] <= out["plain"]["qa_accuracy_drop"]
                                       and out["blend"]["prose_perplexity_ratio"] < out["plain"]["prose_perplexity_ratio"])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
