"""Find the chunks that answer a question: BM25 (words), dense (embedding cosine) or hybrid
(both rankings fused by reciprocal rank)."""

from __future__ import annotations

from dataclasses import dataclass

from tunelab.errors import ConfigError, one_of
from tunelab.rag.chunking import Chunk
from tunelab.rag.index import RETRIEVERS, Index, bm25_tokens

RRF_K = 60  # the constant of Cormack, Clarke and Buettcher (2009): damps the weight of the very top ranks
CANDIDATES = 100  # each ranking's depth before fusion


@dataclass
class Hit:
    chunk: Chunk
    source: str  # the document's name
    score: float  # the retriever's own score (BM25, cosine, or fused)
    rank: int  # 1 = best


def search(index: Index, query: str, k: int = 4, retriever: str | None = None) -> list[Hit]:
    """The ``k`` best chunks of ``index`` for ``query`` by ``retriever`` (default: the index's)."""
    retriever = retriever or index.retriever
    if retriever not in RETRIEVERS:
        raise ConfigError(one_of("retriever", retriever, RETRIEVERS))
    if retriever != "bm25" and index.embeddings is None:
        raise ConfigError(f"{index.path}: holds no embeddings, so it cannot search by {retriever}; rebuild it "
                          "with `tunelab rag index --retriever dense` (or hybrid), or search with bm25")
    if k < 1:
        raise ConfigError(f"--k must be at least 1, got {k}")
    if retriever == "bm25":
        ranked = bm25_ranking(index, query)
    elif retriever == "dense":
        ranked = dense_ranking(index, query)
    else:
        ranked = fuse([[i for i, _ in bm25_ranking(index, query)[:CANDIDATES]],
                       [i for i, _ in dense_ranking(index, query)[:CANDIDATES]]])
    return [Hit(index.chunks[i], index.source(index.chunks[i]), score, rank)
            for rank, (i, score) in enumerate(ranked[:k], 1)]


def bm25_ranking(index: Index, query: str) -> list[tuple[int, float]]:
    """Chunks sharing at least one term with ``query``, best BM25 score first (ties: index order)."""
    import numpy as np

    tokens = bm25_tokens([query])[0]
    if not tokens:
        return []
    scores = index.bm25.get_scores(tokens)
    order = np.argsort(-scores, kind="stable")
    return [(int(i), float(scores[i])) for i in order if scores[i] > 0]


def dense_ranking(index: Index, query: str) -> list[tuple[int, float]]:
    """Every chunk, highest cosine similarity to ``query`` first."""
    import numpy as np

    from tunelab.rag.embed import embed_query

    scores = index.embeddings @ embed_query(index.embedder, query)
    order = np.argsort(-scores, kind="stable")
    return [(int(i), float(scores[i])) for i in order]


def fuse(rankings: list[list[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    """Reciprocal-rank fusion: each item scores the sum of 1 / (k + rank) over the rankings it
    is in. Scores of different retrievers are not comparable; their ranks are."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, 1):
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))
