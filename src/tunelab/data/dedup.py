"""Exact and near-duplicate groups of rows.

Exact: rows whose roles and whitespace-normalised texts are equal. Near: MinHash over word
3-gram shingles with LSH banding, confirmed by the estimated Jaccard similarity.
"""

from __future__ import annotations

import re
from collections import defaultdict

import numpy as np


NUM_PERM = 64
_WORD = re.compile(r"\w+", re.UNICODE)


def text_of(messages: list[dict]) -> str:
    return "\n".join(m["content"] for m in messages)


def exact_groups(rows: list[list[dict]]) -> list[list[int]]:
    """Index groups (size ≥ 2) of identical rows, in order of first appearance."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        # the canonical content row_key hashes, used as the key itself: equal exactly when
        # row_key is, without serialising and hashing every row (4x fewer CPU seconds)
        groups[tuple((m["role"], " ".join(m["content"].split())) for m in row)].append(i)
    return [g for g in groups.values() if len(g) > 1]


# MinHash/LSH written with numpy rather than datasketch: datasketch hashes every shingle with
# sha1 in a Python loop (~1.5 µs each), which alone takes longer than our 30-second budget for
# 100,000 rows. Here words become ids through one dict, word 3-grams are combined and hashed
# for all rows at once, and each permutation is a multiply-shift hash over the whole array.
_K = np.array([0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9], dtype=np.uint64)
_EMPTY = np.iinfo(np.uint64).max


def signatures(texts: list[str], num_perm: int = NUM_PERM, seed: int = 1) -> np.ndarray:
    """MinHash signatures (rows × num_perm) of each text's word 3-gram set."""
    words: list[str] = []
    lens = np.zeros(len(texts), dtype=np.int64)
    for i, text in enumerate(texts):
        found = _WORD.findall(text.lower())
        lens[i] = len(found)
        words.extend(found)
    # word -> id in order of first appearance (deterministic for a given file), looked up in C
    index = {w: i for i, w in enumerate(dict.fromkeys(words))}
    a = np.fromiter(map(index.__getitem__, words), dtype=np.uint64, count=len(words)) + np.uint64(1)
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    with np.errstate(over="ignore"):
        if len(a) >= 3:
            grams = a[:-2] * _K[0] + a[1:-1] * _K[1] + a[2:] * _K[2]
            row_of = np.repeat(np.arange(len(texts)), lens)[:-2]
            ok = np.arange(len(grams)) + 2 < (starts + lens)[row_of]
            grams, gram_rows = grams[ok], row_of[ok]
        else:
            grams, gram_rows = np.zeros(0, np.uint64), np.zeros(0, np.int64)
        short = np.nonzero((lens > 0) & (lens < 3))[0]  # one- and two-word texts: one shingle each
        if len(short):
            first = a[starts[short]] * _K[0]
            second = np.where(lens[short] == 2, a[np.minimum(starts[short] + 1, len(a) - 1)], 0) * _K[1]
            grams = np.concatenate([grams, first + second])
            gram_rows = np.concatenate([gram_rows, short])
            order = np.argsort(gram_rows, kind="stable")
            grams, gram_rows = grams[order], gram_rows[order]
        rng = np.random.default_rng(seed)
        mult = rng.integers(1, 2**63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        add = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
        sig = np.full((len(texts), num_perm), _EMPTY, dtype=np.uint64)
        if len(grams):
            _min_hashes(grams, gram_rows, mult, add, sig)
    return sig


def _min_hashes(grams: np.ndarray, gram_rows: np.ndarray, mult: np.ndarray, add: np.ndarray, sig: np.ndarray,
                block: int = 4096) -> None:
    """sig[row, p] = min over the row's grams of (gram * mult[p] + add[p]) >> 32, for rows
    that have grams (``gram_rows`` sorted). Done a block of rows at a time (about ``block``
    grams) into one reused buffer: the whole file at once made temporaries of grams x 8
    permutations x 8 bytes (1.3 GB each on 100k rows) and ran at memory speed."""
    has = np.unique(gram_rows)
    seg = np.searchsorted(gram_rows, has)
    ends = np.append(seg[1:], len(grams))
    buf = np.empty((max(block, int((ends - seg).max())), len(mult)), dtype=np.uint64)
    shift = np.uint64(32)
    lo = 0
    while lo < len(has):
        hi = max(lo + 1, int(np.searchsorted(ends, seg[lo] + block, side="right")))
        start, stop = int(seg[lo]), int(ends[hi - 1])
        out = buf[:stop - start]
        np.multiply(grams[start:stop, None], mult[None, :], out=out)
        np.add(out, add[None, :], out=out)
        np.right_shift(out, shift, out=out)
        sig[has[lo:hi]] = np.minimum.reduceat(out, seg[lo:hi] - start, axis=0)
        lo = hi


def _bands(threshold: float, num_perm: int) -> int:
    """Rows per LSH band whose S-curve threshold (1/b)^(1/r) is nearest ``threshold``."""
    choices = [r for r in (1, 2, 4, 8, 16, 32) if num_perm % r == 0]
    return min(choices, key=lambda r: abs((r / num_perm) ** (1 / r) - threshold))


def _similar(sig: np.ndarray, i: int, j: int, threshold: float) -> bool:
    return bool(sig[i][0] != _EMPTY) and float(np.mean(sig[i] == sig[j])) >= threshold


def _buckets(sig: np.ndarray, rows_per_band: int, members) -> dict:
    buckets: dict = defaultdict(list)
    for b in range(0, sig.shape[1], rows_per_band):
        band = np.ascontiguousarray(sig[:, b:b + rows_per_band])
        for i in members:
            buckets[(b, band[i].tobytes())].append(i)
    return buckets


def near_groups(texts: list[str], threshold: float = 0.8) -> list[list[int]]:
    """Index groups (size ≥ 2) of texts whose word 3-gram sets overlap at least ``threshold``
    (estimated Jaccard), joined transitively; exact copies are included."""
    sig = signatures(texts)
    parent = list(range(len(texts)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for members in _buckets(sig, _bands(threshold, sig.shape[1]), range(len(texts))).values():
        for j in members[1:]:
            for i in members[:20]:  # a huge bucket is a pile of copies: its head stands for it
                if i != j and root(i) != root(j) and _similar(sig, i, j, threshold):
                    parent[root(j)] = root(i)
                    break
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(texts)):
        groups[root(i)].append(i)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])


def matches_against(texts: list[str], others: list[str], threshold: float = 0.8) -> list[tuple[int, str]]:
    """Indices of ``texts`` that also appear in ``others``: (index, "exact" | "near")."""
    norm = lambda t: " ".join(t.lower().split())  # noqa: E731
    exact = {norm(t) for t in others}
    sig = signatures(texts + others)
    n = len(texts)
    index = _buckets(sig, _bands(threshold, sig.shape[1]), range(n, len(sig)))
    r = _bands(threshold, sig.shape[1])
    out = []
    for i, text in enumerate(texts):
        if norm(text) in exact:
            out.append((i, "exact"))
            continue
        candidates = {j for b in range(0, sig.shape[1], r) for j in index.get((b, sig[i, b:b + r].tobytes()), [])}
        if any(_similar(sig, i, j, threshold) for j in candidates):
            out.append((i, "near"))
    return out
