"""Traffic, latency and drift from the server's request log.

Drift compares what users send with what each adapter was trained on: prompt lengths (in
tokens, with a two-sample Kolmogorov–Smirnov statistic) and vocabulary (the share of prompt
words never seen in the training prompts; needs a log written with --log-content).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

_WORD = re.compile(r"\w+")


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def ks_statistic(a: list[float], b: list[float]) -> float | None:
    """Largest gap between the two empirical CDFs (0 = same distribution, 1 = disjoint)."""
    if not a or not b:
        return None
    a, b = sorted(a), sorted(b)
    i = j = 0
    gap = 0.0
    while i < len(a) and j < len(b):
        x = min(a[i], b[j])
        while i < len(a) and a[i] <= x:
            i += 1
        while j < len(b) and b[j] <= x:
            j += 1
        gap = max(gap, abs(i / len(a) - j / len(b)))
    return round(gap, 4)


def training_profile(run_path: Path, tokenizer) -> dict:
    """Prompt lengths (tokens) and prompt vocabulary of a run's training split."""
    from tunelab.data.formats import prompt_and_reference
    from tunelab.data.tokens import encode_prompt

    lengths, vocab = [], set()
    for line in (run_path / "data" / "train.jsonl").read_text().splitlines():
        messages = json.loads(line)["messages"]
        prompt, _ = prompt_and_reference(messages)
        lengths.append(len(encode_prompt(tokenizer, prompt)))
        vocab.update(w.lower() for m in prompt for w in _WORD.findall(m["content"]))
    return {"lengths": lengths, "vocab": vocab}


def summarise(db: str | Path, profiles: dict[str, dict] | None = None) -> dict:
    from tunelab.serve.store import Store

    with Store(db) as store:
        rows = store.rows("SELECT model, status, prompt_tokens, completion_tokens, latency_ms, ttft_ms, prompt "
                          "FROM requests ORDER BY ts")
    out: dict = {"requests": len(rows), "models": {}}
    for model in sorted({r[0] for r in rows}):
        mine = [r for r in rows if r[0] == model]
        ok = [r for r in mine if r[1] == 200]
        lat = [r[4] for r in ok]
        ttft = [r[5] for r in ok if r[5] is not None]
        entry = {
            "requests": len(mine),
            "by_status": {str(s): sum(1 for r in mine if r[1] == s) for s in sorted({r[1] for r in mine})},
            "latency_ms": {q: _round(percentile(lat, p)) for q, p in (("p50", .5), ("p95", .95), ("p99", .99))},
            "ttft_ms": {q: _round(percentile(ttft, p)) for q, p in (("p50", .5), ("p95", .95))},
            "completion_tokens": sum(r[3] for r in ok),
        }
        profile = (profiles or {}).get(model)
        if profile:
            served = [r[2] for r in mine]
            words = [w.lower() for r in mine if r[6] for w in _WORD.findall(_prompt_text(r[6]))]
            entry["drift"] = {
                "prompt_tokens_served_p50": percentile(served, .5),
                "prompt_tokens_trained_p50": percentile(profile["lengths"], .5),
                "length_ks": ks_statistic(served, profile["lengths"]),
                "unseen_word_share": round(sum(w not in profile["vocab"] for w in words) / len(words), 4)
                if words else None,
            }
        out["models"][model] = entry
    return out


def _prompt_text(logged: str) -> str:
    try:
        messages = json.loads(logged)
        return " ".join(m["content"] for m in messages if m.get("role") != "assistant")
    except (json.JSONDecodeError, TypeError, AttributeError):
        return logged


def _round(x):
    return None if x is None else round(x, 1)
