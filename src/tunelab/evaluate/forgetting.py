"""Catastrophic forgetting: general knowledge before and after fine-tuning.

Two probes ship with tunelab: short general-knowledge questions across several domains
(``general_qa.jsonl``), scored by whether the reference answer appears in the model's greedy
answer, and plain general prose (``general_prose.txt``), scored by perplexity.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache

from tunelab import resources
from tunelab.evaluate.metrics import normalise
from tunelab.evaluate.scoring import text_nll


@lru_cache(maxsize=1)
def probe_questions() -> list[dict]:
    return [json.loads(x) for x in resources.path("general_qa.jsonl").read_text().splitlines() if x.strip()]


@lru_cache(maxsize=1)
def probe_prose() -> str:
    return resources.path("general_prose.txt").read_text()


def qa_correct(answer: str, reference: str) -> bool:
    ref = normalise(reference)
    return bool(ref) and f" {ref} " in f" {normalise(answer)} " or normalise(answer).startswith(ref)


def qa_accuracy(answers: list[str], references: list[str]) -> float:
    return sum(qa_correct(a, r) for a, r in zip(answers, references)) / max(len(references), 1)


def prose_perplexity(model, tokenizer, text: str | None = None, window: int = 256) -> float:
    ids = tokenizer((text or probe_prose()), add_special_tokens=False)["input_ids"]
    nll, n = text_nll(model, ids, window)
    return math.exp(min(nll / max(n, 1), 50.0))


def side(model, tokenizer, generate_fn, rows: list[dict] | None = None, prose: str | None = None) -> dict:
    """QA accuracy (overall and by domain) and prose perplexity of one model.

    ``generate_fn`` answers a list of questions (greedy)."""
    rows = probe_questions() if rows is None else rows
    answers = generate_fn([r["question"] for r in rows])
    by_domain: dict[str, list[bool]] = {}
    for r, a in zip(rows, answers):
        by_domain.setdefault(r["domain"], []).append(qa_correct(a, r["answer"]))
    return {
        "qa_accuracy": round(qa_accuracy(answers, [r["answer"] for r in rows]), 4),
        "qa_by_domain": {d: round(sum(v) / len(v), 4) for d, v in sorted(by_domain.items())},
        "prose_perplexity": round(prose_perplexity(model, tokenizer, prose), 4),
        "questions": len(rows),
    }


def delta(base: dict, tuned: dict) -> dict:
    """Forgetting: the accuracy lost and the perplexity gained (positive = forgot)."""
    return {
        "qa_accuracy_drop": round(base["qa_accuracy"] - tuned["qa_accuracy"], 4),
        "prose_perplexity_ratio": round(tuned["prose_perplexity"] / base["prose_perplexity"], 4),
    }
