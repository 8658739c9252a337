"""Load time of a RAG index of 10,000 chunks, and the time of one search, beside the time of
reading the chunk file alone (the least any load can cost).

Builds a synthetic corpus (seeded random words from a 5,000-word vocabulary, so BM25 has real
postings) chunked with the default settings in the bundled model's tokens, indexes it once, then
loads it --loads times in this process and searches it with --queries random questions. With
--dense the index also holds embeddings (embedding 10k chunks takes minutes on a CPU). Prints
one JSON line.

    .venv/bin/python bench/rag_index.py [--chunks 10000] [--loads 5] [--dense] [--out runs/bench-rag]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path


def corpus(folder: Path, words_total: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    vocab = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9))) for _ in range(5000)]
    folder.mkdir(parents=True, exist_ok=True)
    per_doc = 20_000
    for d in range(words_total // per_doc + 1):
        words = rng.choices(vocab, k=per_doc)
        text = "\n\n".join(" ".join(words[i:i + 60]) + "." for i in range(0, per_doc, 60))
        (folder / f"doc{d:04d}.txt").write_text(text, encoding="utf-8")


def timed(fn, repeat: int) -> tuple[float, object]:
    times, value = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def main() -> None:
    from tunelab.rag.index import build_index, load_index, read_chunks
    from tunelab.rag.retrieve import search

    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--dense", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-rag"))
    args = parser.parse_args()
    # 200-token chunks overlapping by 40 advance 160 tokens; a random letter string is about 4 tokens
    corpus(args.out / "docs", int(args.chunks * 160 / 4.0))
    start = time.perf_counter()
    manifest = build_index([args.out / "docs"], args.out / "index", retriever="hybrid" if args.dense else "bm25")
    build_seconds = time.perf_counter() - start
    chunks_only, _ = timed(lambda: read_chunks(args.out / "index" / "chunks.jsonl"), args.loads)
    load, index = timed(lambda: load_index(args.out / "index"), args.loads)
    rng = random.Random(1)
    questions = [" ".join(rng.choice(c.text.split()) for _ in range(6)) for c in rng.sample(index.chunks, args.queries)]
    search_total, _ = timed(lambda: [search(index, q, k=4) for q in questions], 1)
    print(json.dumps({"chunks": manifest["chunks"], "retriever": manifest["retriever"],
                      "build_seconds": round(build_seconds, 2), "load_seconds": round(load, 4),
                      "read_chunks_seconds": round(chunks_only, 4), "load_over_read_chunks": round(load / chunks_only, 2),
                      "search_ms": round(search_total / len(questions) * 1000, 2),
                      "index_mb": round(sum(p.stat().st_size for p in (args.out / "index").rglob("*")) / 1e6, 1)}))


if __name__ == "__main__":
    main()
