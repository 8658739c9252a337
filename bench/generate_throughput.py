"""Eval generation: batched (KV cache, prompts sorted by length, left-padded) vs one prompt at a
time with `generate`, on the same prompts and the bundled model. Prints one JSON line.

    .venv/bin/python bench/generate_throughput.py [--rows 48] [--max-new-tokens 48]
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    from tunelab import resources
    from tunelab.data import dataset
    from tunelab.data.formats import prompt_and_reference
    from tunelab.data.tokens import encode_prompt
    from tunelab.inference.generate import generate
    from tunelab.models.catalog import DEFAULT_MODEL
    from tunelab.models.load import load_model, load_tokenizer, resolve

    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=48)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    args = parser.parse_args()
    ref = resolve(DEFAULT_MODEL)
    tok, model = load_tokenizer(ref), load_model(ref)
    rows = dataset.load_conversations(resources.path("demo_calendar.jsonl"))[: args.rows]
    prompts = [encode_prompt(tok, prompt_and_reference(m)[0]) for m in rows]
    generate(model, tok, prompts[:2], max_new_tokens=4)  # warm-up
    start = time.perf_counter()
    single = [generate(model, tok, [p], max_new_tokens=args.max_new_tokens, batch_size=1)[0] for p in prompts]
    one_s = time.perf_counter() - start
    start = time.perf_counter()
    batched = generate(model, tok, prompts, max_new_tokens=args.max_new_tokens, batch_size=16)
    batch_s = time.perf_counter() - start
    same = sum(a == b for a, b in zip(single, batched))
    print(json.dumps({"rows": len(prompts), "max_new_tokens": args.max_new_tokens,
                      "one_at_a_time_rows_per_s": round(len(prompts) / one_s, 2),
                      "batched_rows_per_s": round(len(prompts) / batch_s, 2),
                      "speedup": round(one_s / batch_s, 2), "identical_answers": same}))


if __name__ == "__main__":
    main()
