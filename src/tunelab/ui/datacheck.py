"""`tunelab data check` on a file uploaded through the dashboard, plus the token-length
histogram the page draws. The file is read as its name's suffix says (JSONL, JSON, CSV,
Parquet: data/sources.py), so findings name lines, rows or indexes as the CLI does."""

from __future__ import annotations

import tempfile
from pathlib import Path

from tunelab.errors import DataError

HISTOGRAM_BINS = 20
SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".pq")  # what data/sources.py reads from a file


def check_upload(body: bytes, filename: str, model: str, max_length: int | None = None) -> dict:
    """The data check's report for the uploaded bytes (as ``data check --json`` prints it),
    with ``histogram`` (token lengths) and lines counted in the file as uploaded."""
    from tunelab.data.doctor import diagnose

    shown = Path(filename).name or "upload.jsonl"
    if not body:
        raise DataError(f"{shown}: the file is empty")
    suffix = Path(shown).suffix.lower()
    with tempfile.TemporaryDirectory(prefix="tunelab-ui-check-") as folder:
        path = Path(folder) / ("upload" + (suffix if suffix in SUFFIXES else ".jsonl"))
        path.write_bytes(body)
        try:
            report = diagnose(path, model, max_length).as_dict()
            report["histogram"] = histogram(_token_lengths(path, model))
        except DataError as exc:  # named by the file the user chose, not the temporary copy
            raise DataError(str(exc).replace(str(path), shown)) from None
    report["path"] = shown
    return report


def _token_lengths(path: Path, model: str) -> list[int]:
    # diagnose keeps the lengths to itself (it only returns their summary and an optional PNG),
    # so the valid rows are read and measured once more here (small files: the dashboard caps uploads)
    from tunelab.data.tokens import count_tokens
    from tunelab.data.validate import parse_file
    from tunelab.models.load import load_tokenizer, resolve

    rows = parse_file(path).messages
    return count_tokens(load_tokenizer(resolve(model)), rows) if rows else []


def histogram(lengths: list[int], bins: int = HISTOGRAM_BINS) -> dict:
    """Counts of token lengths in ``bins`` equal-width bins: {edges, counts}."""
    if not lengths:
        return {"edges": [], "counts": []}
    lo, hi = min(lengths), max(lengths)
    width = max(1, -(-(hi - lo + 1) // bins))  # ceiling division: integer-wide bins
    n = -(-(hi - lo + 1) // width)
    counts = [0] * n
    for value in lengths:
        counts[(value - lo) // width] += 1
    return {"edges": [lo + i * width for i in range(n + 1)], "counts": counts}
