"""Split documents into windows of tokens that overlap, so a fact cut by one window's edge is
whole in the next. Windows are counted in a model tokenizer's tokens (the unit of the context
budget) and stored as character spans of the original text, so no text is re-decoded."""

from __future__ import annotations

from dataclasses import dataclass

from tunelab.errors import ConfigError


@dataclass
class Chunk:
    doc: int  # index into the index's document list
    start: int  # character span in the document
    end: int
    text: str


def token_windows(n_tokens: int, size: int, overlap: int) -> list[tuple[int, int]]:
    """Token ranges [start, end) of ``size`` tokens, each starting ``size - overlap`` after the
    last; the final window ends at the last token (it may be shorter)."""
    check_settings(size, overlap)
    step = size - overlap
    windows, start = [], 0
    while start < n_tokens:
        end = min(start + size, n_tokens)
        windows.append((start, end))
        if end == n_tokens:
            break
        start += step
    return windows


def check_settings(size: int, overlap: int) -> None:
    if size < 1:
        raise ConfigError(f"--chunk-tokens must be at least 1, got {size}")
    if not 0 <= overlap < size:
        raise ConfigError(f"--overlap must be at least 0 and below --chunk-tokens ({size}), got {overlap}")


def chunk_text(tokenizer, text: str, doc: int, size: int, overlap: int) -> list[Chunk]:
    """The chunks of one document's ``text``, counted in ``tokenizer``'s tokens."""
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    chunks = []
    for start, end in token_windows(len(offsets), size, overlap):
        lo, hi = offsets[start][0], offsets[end - 1][1]
        if text[lo:hi].strip():
            chunks.append(Chunk(doc, lo, hi, text[lo:hi]))
    return chunks
