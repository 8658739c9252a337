"""Exact and near-duplicate groups of rows.

Exact: rows whose roles and whitespace-normalised texts are equal. Near: MinHash over word
3-gram shingles with LSH banding (datasketch), confirmed by the estimated Jaccard similarity.
"""

from __future__ import annotations

import re
from collections import defaultdict

from tunelab.data.split import row_key

NUM_PERM = 64
_WORD = re.compile(r"\w+", re.UNICODE)


def text_of(messages: list[dict]) -> str:
    return "\n".join(m["content"] for m in messages)


def exact_groups(rows: list[list[dict]]) -> list[list[int]]:
    """Index groups (size ≥ 2) of identical rows, in order of first appearance."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        groups[row_key(row)].append(i)
    return [g for g in groups.values() if len(g) > 1]


def shingles(text: str, n: int = 3) -> set[bytes]:
    words = _WORD.findall(text.lower())
    if len(words) < n:
        return {" ".join(words).encode()} if words else set()
    return {" ".join(words[i:i + n]).encode() for i in range(len(words) - n + 1)}


def minhashes(texts: list[str]):
    from datasketch import MinHash

    return MinHash.bulk([shingles(t) for t in texts], num_perm=NUM_PERM, seed=1)


def near_groups(texts: list[str], threshold: float = 0.8) -> list[list[int]]:
    """Index groups (size ≥ 2) of texts whose shingle sets overlap at least ``threshold``
    (Jaccard), joined transitively; exact copies are included."""
    from datasketch import MinHashLSH

    hashes = minhashes(texts)
    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    parent = list(range(len(texts)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, h in enumerate(hashes):
        for j in lsh.query(h):
            if h.jaccard(hashes[j]) >= threshold:
                parent[root(i)] = root(j)
        lsh.insert(i, h)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(texts)):
        groups[root(i)].append(i)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def matches_against(texts: list[str], others: list[str], threshold: float = 0.8) -> list[tuple[int, str]]:
    """Indices of ``texts`` that also appear in ``others``: (index, "exact" | "near")."""
    from datasketch import MinHashLSH

    norm = lambda t: " ".join(t.lower().split())  # noqa: E731
    exact = {norm(t) for t in others}
    other_hashes = minhashes(others)
    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    for j, h in enumerate(other_hashes):
        lsh.insert(j, h)
    out = []
    for i, (text, h) in enumerate(zip(texts, minhashes(texts))):
        if norm(text) in exact:
            out.append((i, "exact"))
        elif any(h.jaccard(other_hashes[j]) >= threshold for j in lsh.query(h)):
            out.append((i, "near"))
    return out
