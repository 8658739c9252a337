"""`tunelab data check` on a file uploaded through the dashboard, plus the token-length
histogram the page draws. A CSV file (one example per record, a header naming the fields) is
checked as the JSONL it stands for, and every finding is reported at its line in the CSV."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

from tunelab.errors import DataError

HISTOGRAM_BINS = 20


def check_upload(body: bytes, filename: str, model: str, max_length: int | None = None) -> dict:
    """The data check's report for the uploaded bytes (as ``data check --json`` prints it),
    with ``histogram`` (token lengths) and lines counted in the file as uploaded."""
    from tunelab.data.doctor import diagnose

    shown = Path(filename).name or "upload.jsonl"
    if not body:
        raise DataError(f"{shown}: the file is empty")
    csv_lines: list[int] | None = None
    if shown.lower().endswith(".csv"):
        body, csv_lines = csv_as_jsonl(body, shown)
    with tempfile.TemporaryDirectory(prefix="tunelab-ui-check-") as folder:
        path = Path(folder) / "upload.jsonl"
        path.write_bytes(body)
        report = diagnose(path, model, max_length).as_dict()
        report["histogram"] = histogram(_token_lengths(path, model))
    report["path"] = shown
    if csv_lines is not None:
        _to_csv_lines(report, csv_lines)
    return report


def _token_lengths(path: Path, model: str) -> list[int]:
    # diagnose keeps the lengths to itself (it only returns their summary and an optional PNG),
    # so the valid rows are measured once more here; the tokenizer load is cached
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


def csv_as_jsonl(body: bytes, name: str) -> tuple[bytes, list[int]]:
    """The CSV's records as JSONL bytes (one object per record, keyed by the header) and, for
    each JSONL line, the CSV line its record starts on."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{name}: not valid UTF-8 at byte {exc.start}") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except (StopIteration, csv.Error):
        raise DataError(f"{name}:1: expected a header row naming the fields") from None
    if not any(h.strip() for h in header):
        raise DataError(f"{name}:1: expected a header row naming the fields")
    out, starts, previous_end = [], [], reader.line_num
    try:
        for record in reader:
            start, previous_end = previous_end + 1, reader.line_num
            if not any(cell.strip() for cell in record):
                continue  # a blank line between records
            starts.append(start)
            out.append(json.dumps(dict(zip((h.strip() for h in header), record)), ensure_ascii=False))
    except csv.Error as exc:
        raise DataError(f"{name}:{reader.line_num}: {exc}") from None
    if not out:
        raise DataError(f"{name}: no records after the header")
    return ("\n".join(out) + "\n").encode("utf-8"), starts


def _to_csv_lines(report: dict, starts: list[int]) -> None:
    def at(line: int) -> int:
        return starts[line - 1] if 1 <= line <= len(starts) else line

    for finding in report["errors"] + report["warnings"]:
        finding["line"] = at(finding["line"])
    for finding in report["findings"]:
        finding["lines"] = [at(n) for n in finding["lines"]]
    report["format"] = f"csv ({report['format']})" if report.get("format") else "csv"
