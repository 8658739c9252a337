"""An optional pairwise judge: a second model says which of two answers is better.

The judge is a local model (catalog name, Hub id, folder or run directory) or any
OpenAI-compatible endpoint (``http://host:port/v1`` with model ``NAME``, as ``URL#NAME``).
Each pair is shown in a seeded random order, so the judge's taste for the first or second
answer cancels out; the win rate counts ties as half.
"""

from __future__ import annotations

import random
import re
from typing import Callable

PROMPT = (
    "You compare two answers to the same request. Reply with one letter: A if answer A is better, "
    "B if answer B is better, or T if they are equally good.\n\nRequest:\n{q}\n\nReference answer:\n{ref}\n\n"
    "Answer A:\n{a}\n\nAnswer B:\n{b}\n\nBetter answer (A, B or T):"
)


def endpoint_judge(spec: str, api_key: str | None = None) -> Callable[[str], str]:
    import httpx

    url, _, model = spec.partition("#")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def ask(prompt: str) -> str:
        r = httpx.post(url.rstrip("/") + "/chat/completions", headers=headers, timeout=120, json={
            "model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 4, "temperature": 0})
        r.raise_for_status()
        return r.json()["choices"][0]["message"]["content"]

    return ask


def local_judge(target: str) -> Callable[[str], str]:
    """A local model (catalog name, Hub id, folder or run directory) as the judge, in fp32,
    answering greedily in a few tokens."""
    from tunelab.data.tokens import encode_prompt
    from tunelab.inference.generate import generate
    from tunelab.inference.load import load_run

    loaded = load_run(target, "eval", "float32")

    def ask(prompt: str) -> str:
        ids = encode_prompt(loaded.tokenizer, [{"role": "user", "content": prompt}])
        return generate(loaded.model, loaded.tokenizer, [ids], max_new_tokens=4, batch_size=1, seed=None)[0]

    return ask


def make_judge(spec: str, api_key: str | None = None) -> Callable[[str], str]:
    return endpoint_judge(spec, api_key) if spec.startswith(("http://", "https://")) else local_judge(spec)


def verdict(text: str) -> str | None:
    m = re.search(r"\b([ABT])\b", text.strip().upper())
    return m.group(1) if m else None


def win_rate(ask: Callable[[str], str], prompts: list[str], refs: list[str], base: list[str],
             tuned: list[str], seed: int = 0) -> dict:
    """Share of rows where the judge prefers the tuned answer (ties count half)."""
    rng = random.Random(seed)
    wins = ties = losses = unclear = 0
    for q, ref, b, t in zip(prompts, refs, base, tuned):
        tuned_first = rng.random() < 0.5
        a_text, b_text = (t, b) if tuned_first else (b, t)
        v = verdict(ask(PROMPT.format(q=q, ref=ref, a=a_text, b=b_text)))
        if v is None:
            unclear += 1
        elif v == "T":
            ties += 1
        elif (v == "A") == tuned_first:
            wins += 1
        else:
            losses += 1
    decided = wins + ties + losses
    return {"tuned_win_rate": round((wins + 0.5 * ties) / decided, 4) if decided else None,
            "wins": wins, "ties": ties, "losses": losses, "unclear": unclear}
