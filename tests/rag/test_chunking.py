"""Token windows: their boundaries, their overlap, and chunks as spans of the original text."""

from __future__ import annotations

import pytest

from tunelab.errors import ConfigError
from tunelab.models.load import load_tokenizer, resolve
from tunelab.rag.chunking import chunk_text, token_windows


def test_windows_step_by_size_minus_overlap_and_end_at_the_last_token():
    assert token_windows(10, 4, 1) == [(0, 4), (3, 7), (6, 10)]
    assert token_windows(11, 4, 1) == [(0, 4), (3, 7), (6, 10), (9, 11)]
    assert token_windows(3, 4, 1) == [(0, 3)]
    assert token_windows(0, 4, 1) == []
    assert token_windows(8, 4, 0) == [(0, 4), (4, 8)]


@pytest.mark.parametrize("n,size,overlap", [(50, 7, 3), (64, 16, 4), (5, 5, 4), (100, 9, 0)])
def test_neighbours_share_exactly_the_overlap_and_every_token_is_covered(n, size, overlap):
    windows = token_windows(n, size, overlap)
    covered = set()
    for (s1, e1), (s2, _e2) in zip(windows, windows[1:]):
        assert e1 - s2 == overlap
        assert e1 - s1 == size
    for s, e in windows:
        covered |= set(range(s, e))
    assert covered == set(range(n))


@pytest.mark.parametrize("size,overlap", [(0, 0), (4, 4), (4, -1)])
def test_bad_settings_are_refused(size, overlap):
    with pytest.raises(ConfigError):
        token_windows(10, size, overlap)


def test_chunks_are_spans_of_the_text_counted_in_model_tokens(tiny_model):
    tok = load_tokenizer(resolve(tiny_model))
    text = " ".join(f"Monday meeting {i} in room {i * 7}." for i in range(30))
    chunks = chunk_text(tok, text, doc=3, size=20, overlap=5)
    assert len(chunks) > 3
    for chunk in chunks:
        assert chunk.doc == 3
        assert text[chunk.start:chunk.end] == chunk.text
        assert len(tok(chunk.text, add_special_tokens=False)["input_ids"]) <= 20 + 1  # a cut can split one token
    assert chunks[0].start == 0 and chunks[-1].end == len(text)
    for a, b in zip(chunks, chunks[1:]):
        assert b.start < a.end  # neighbours overlap
        assert text[b.start:a.end].strip()
