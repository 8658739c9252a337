"""Read a JSONL file row by row, keeping 1-based line numbers.

Streaming (one line in memory at a time) so 100k-row files check quickly. Lines that are
not valid UTF-8, not valid JSON or blank come back as ``BadLine`` rather than raising:
a malformed line is a finding to report, never a crash.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tunelab.errors import DataError


@dataclass(frozen=True)
class Row:
    line: int
    obj: object  # whatever json.loads returned; the format layer checks it is an object


@dataclass(frozen=True)
class BadLine:
    line: int
    kind: str  # invalid_utf8 | invalid_json | blank_line
    message: str


def check_readable(path: str | Path) -> Path:
    """Return ``path`` as a Path, or raise DataError if it is missing, a folder or empty."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file")
    if p.is_dir():
        raise DataError(f"{p}: is a folder, expected a .jsonl file")
    try:
        size = p.stat().st_size
        with p.open("rb"):
            pass
    except OSError as exc:
        raise DataError(f"{p}: cannot read ({exc.strerror})") from exc
    if size == 0:
        raise DataError(f"{p}: file is empty, expected one JSON object per line")
    return p


def iter_lines(path: str | Path) -> Iterator[Row | BadLine]:
    """Yield a Row or BadLine for every line of ``path``; trailing blank lines are ignored."""
    p = check_readable(path)
    pending_blank: list[int] = []
    with p.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # a UTF-8 byte-order mark is harmless; editors add it
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield from _flush_blank(pending_blank)
                yield BadLine(number, "invalid_utf8", f"not valid UTF-8 at byte {exc.start}")
                continue
            if not text.strip():
                pending_blank.append(number)
                continue
            yield from _flush_blank(pending_blank)
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                yield BadLine(number, "invalid_json", f"invalid JSON: {exc.msg} at column {exc.colno}")
                continue
            except RecursionError:
                yield BadLine(number, "invalid_json", "invalid JSON: nested too deeply")
                continue
            yield Row(number, obj)


def _flush_blank(pending: list[int]) -> Iterator[BadLine]:
    for number in pending:
        yield BadLine(number, "blank_line", "blank line (remove it)")
    pending.clear()


def read_rows(path: str | Path) -> list[Row]:
    """All rows of a file that must be clean (training input): the first bad line is an error."""
    rows: list[Row] = []
    for item in iter_lines(path):
        if isinstance(item, BadLine):
            raise DataError(f"{path}:{item.line}: {item.message}")
        rows.append(item)
    if not rows:
        raise DataError(f"{path}: no rows found")
    return rows


def write_jsonl(path: str | Path, objs) -> None:
    """Write objects as JSONL atomically (temp file + rename)."""
    from tunelab.io import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs))
