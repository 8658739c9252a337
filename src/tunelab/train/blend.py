"""`train.blend`: general rows mixed into supervised training against catastrophic forgetting.

``general:SHARE`` blends the base model's own answers to everyday requests (the shipped
``general_requests.txt``), sampled at temperature 1 before training: they teach nothing new and
hold the model near where it started (bench/blend_forgetting.py measured this: general-QA
accuracy fell 0.25 without blending and 0.06 with it; docs/forgetting.md). ``FILE.jsonl:SHARE``
blends rows of your own file instead. SHARE is the general rows' share of the blended training
set, as in `tunelab data prepare --blend`; validation rows are never blended.

The general rows are generated once per base model, seed and count and kept under
``TUNELAB_HOME/blend``; the blended training rows are saved in the run's data/train.jsonl.
"""

from __future__ import annotations

import hashlib
import json
import random

from tunelab import resources
from tunelab.config import parse_blend_spec
from tunelab.data import dataset
from tunelab.events import EventSink, no_events

GENERAL = "general"
ANSWER_TOKENS = 96  # an everyday answer: a few sentences
TEMPERATURE = 1.0  # the model's own distribution; greedy answers are sharper and narrow it


def rows_wanted(share: float, n_train: int) -> int:
    """General rows that make up ``share`` of the blended set of ``n_train`` task rows plus them."""
    return round(share / (1 - share) * n_train)


def mix(spec: str, train: list[list[dict]], seed: int, generate_general=None,
        events: EventSink = no_events) -> tuple[list[list[dict]], dict]:
    """The training conversations with general ones blended in (shuffled with ``seed``), and
    what was blended. ``generate_general(n)`` makes ``n`` general rows for ``general:``."""
    source, share = parse_blend_spec(spec)
    want = rows_wanted(share, len(train))
    if source == GENERAL:
        extra = generate_general(want) if want else []
    else:
        extra = _from_file(source, want, seed)
    mixed = train + extra
    random.Random(seed).shuffle(mixed)
    info = {"source": source, "share": share, "wanted": want, "rows": len(extra)}
    events({"event": "note", "text": f"blend: {len(extra)} general rows from {source} mixed into "
                                     f"{len(train)} training rows ({share:.0%} asked)"})
    return mixed, info


def _from_file(path: str, want: int, seed: int) -> list[list[dict]]:
    rows = dataset.load_conversations(path)
    random.Random(seed).shuffle(rows)
    return rows[:want]


def requests() -> list[str]:
    return [line.strip() for line in resources.path("general_requests.txt").read_text().splitlines() if line.strip()]


def general_rows(model, tokenizer, model_id: str, n: int, seed: int) -> list[list[dict]]:
    """``n`` conversations: the shipped everyday requests (cycled) answered by ``model`` itself,
    sampled at temperature 1; cached per model, count and seed."""
    from tunelab.models.load import tunelab_home

    key = hashlib.sha256(f"{model_id}|{n}|{seed}|{ANSWER_TOKENS}|{TEMPERATURE}".encode()).hexdigest()[:16]
    cache = tunelab_home() / "blend" / f"general-{key}.jsonl"
    if cache.is_file():
        return [json.loads(line)["messages"] for line in cache.read_text().splitlines() if line.strip()]
    asks = requests()
    asked = [asks[i % len(asks)] for i in range(n)]
    answers = _answer(model, tokenizer, asked, seed)
    rows = [[{"role": "user", "content": q}, {"role": "assistant", "content": a.strip()}]
            for q, a in zip(asked, answers) if a.strip()]
    from tunelab.data.load import write_jsonl

    write_jsonl(cache, [{"messages": r} for r in rows])
    return rows


def _answer(model, tokenizer, questions: list[str], seed: int) -> list[str]:
    from tunelab.data.tokens import encode_prompt
    from tunelab.inference.generate import generate

    prompts = [encode_prompt(tokenizer, [{"role": "user", "content": q}]) for q in questions]
    was_training = model.training
    model.eval()
    try:
        return generate(model, tokenizer, prompts, max_new_tokens=ANSWER_TOKENS, batch_size=32,
                        temperature=TEMPERATURE, seed=seed)
    finally:
        model.train(was_training)
