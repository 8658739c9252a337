"""The index folder: settings recorded, a round trip that changes nothing, atomic replacement,
no pickle, and clear errors for what is not an index."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.rag.helpers import TOY_DOCS, write_docs
from tunelab.errors import ConfigError, DataError
from tunelab.rag.index import build_index, load_index
from tunelab.rag.retrieve import search


def test_the_index_round_trips_with_its_settings(tmp_path, tiny_model):
    docs = write_docs(tmp_path / "docs")
    (docs / "broken.txt").write_bytes(b"\xff\xfe\x00")
    manifest = build_index([docs], tmp_path / "idx", chunk_tokens=12, overlap=3, tokenizer=tiny_model)
    index = load_index(tmp_path / "idx")
    assert index.manifest == manifest
    assert manifest["chunking"] == {"tokenizer": tiny_model, "chunk_tokens": 12, "overlap": 3}
    assert manifest["retriever"] == "bm25" and manifest["embedder"] is None
    assert len(index.documents) == len(TOY_DOCS) and manifest["chunks"] == len(index.chunks) > len(TOY_DOCS)
    assert [s["name"] for s in manifest["skipped"]] == [str(docs / "broken.txt")]
    texts = {name: (docs / name).read_text(encoding="utf-8") for name in TOY_DOCS}
    for chunk in index.chunks:
        assert texts[index.source(chunk).rsplit("/", 1)[-1]][chunk.start:chunk.end] == chunk.text
    # every array loads without pickle; the rest is JSON
    for array in (tmp_path / "idx").rglob("*.npy"):
        np.load(array, allow_pickle=False)
    json.loads((tmp_path / "idx" / "bm25" / "params.index.json").read_text())
    again = load_index(tmp_path / "idx")
    query = "how long is the warranty"
    assert [(h.chunk, h.score) for h in search(index, query)] == [(h.chunk, h.score) for h in search(again, query)]


def test_rebuilding_replaces_an_index_and_leaves_no_temporary_folders(tmp_path, tiny_model):
    docs = write_docs(tmp_path / "docs")
    build_index([docs / "kettle.md"], tmp_path / "idx", tokenizer=tiny_model)
    build_index([docs], tmp_path / "idx", tokenizer=tiny_model)
    assert len(load_index(tmp_path / "idx").documents) == len(TOY_DOCS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs", "idx"]


def test_a_failed_build_leaves_the_old_index_untouched(tmp_path, tiny_model):
    docs = write_docs(tmp_path / "docs")
    build_index([docs], tmp_path / "idx", tokenizer=tiny_model)
    before = (tmp_path / "idx" / "manifest.json").read_text()
    with pytest.raises(DataError, match="no readable documents"):
        build_index([tmp_path / "missing.md"], tmp_path / "idx", tokenizer=tiny_model)
    with pytest.raises(ConfigError):
        build_index([docs], tmp_path / "idx", tokenizer=tiny_model, retriever="magic")
    assert (tmp_path / "idx" / "manifest.json").read_text() == before


def test_another_folder_is_never_overwritten(tmp_path, tiny_model):
    docs = write_docs(tmp_path / "docs")
    with pytest.raises(ConfigError, match="not a tunelab index"):
        build_index([docs], docs, tokenizer=tiny_model)
    assert sorted(p.name for p in docs.iterdir()) == sorted(TOY_DOCS)


def test_what_is_not_a_whole_index_is_an_error_that_says_rebuild(tmp_path, tiny_model):
    with pytest.raises(DataError, match="no manifest.json"):
        load_index(tmp_path)
    build_index([write_docs(tmp_path / "docs")], tmp_path / "idx", tokenizer=tiny_model)
    with open(tmp_path / "idx" / "chunks.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps([0, 0, 1, "x"]) + "\n")
    with pytest.raises(DataError, match="rebuild"):
        load_index(tmp_path / "idx")
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    (tmp_path / "idx" / "manifest.json").write_text(json.dumps({**manifest, "version": 99}))
    with pytest.raises(DataError, match="version 99"):
        load_index(tmp_path / "idx")
