"""Seeded splits that never put two copies of one row on both sides."""

from __future__ import annotations

import hashlib
import json
import random


def row_key(messages: list[dict]) -> str:
    """A stable hash of a conversation's content (roles and texts, whitespace-normalised)."""
    canon = [(m["role"], " ".join(m["content"].split())) for m in messages]
    return hashlib.sha1(json.dumps(canon, ensure_ascii=False).encode()).hexdigest()


def split_indices(keys: list[str], fractions: list[float], seed: int) -> list[list[int]]:
    """Split row indices into len(fractions)+1 groups (the first takes the remainder).

    Rows sharing a key move together, so duplicates never straddle two splits. Each split
    after the first with a fraction above 0 gets at least one group when there are enough groups.
    """
    groups: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    order = sorted(groups)  # deterministic before shuffling
    random.Random(seed).shuffle(order)
    n = len(keys)
    sizes = [max(1, round(f * n)) if f > 0 and len(order) > len(fractions) else 0 for f in fractions]
    out: list[list[int]] = [[] for _ in range(len(fractions) + 1)]
    target = 1
    for k in order:
        while target <= len(fractions) and len(out[target]) >= sizes[target - 1]:
            target += 1
        bucket = target if target <= len(fractions) else 0
        out[bucket].extend(groups[k])
    return [sorted(b) for b in out]
