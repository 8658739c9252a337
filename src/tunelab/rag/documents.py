"""Read the documents an index is built from: .txt, .md, .jsonl (one document per row, its text
in a named field) and folders of those. A document that cannot be read is reported by name
and skipped; it never stops the others."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SUFFIXES = (".txt", ".md", ".markdown", ".jsonl")


@dataclass
class Document:
    name: str  # the file path, or "path:line" (or the row's "id") for a JSONL row
    text: str


@dataclass
class Skipped:
    name: str
    reason: str


def read_documents(paths: list[str | Path], text_field: str = "text") -> tuple[list[Document], list[Skipped]]:
    """Every readable document under ``paths`` (files, or folders searched recursively in name
    order), and the ones that were skipped with the reason."""
    docs: list[Document] = []
    skipped: list[Skipped] = []
    for path in map(Path, paths):
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not files:
                skipped.append(Skipped(str(path), f"folder holds no {', '.join(SUFFIXES)} files"))
        elif not path.exists():
            skipped.append(Skipped(str(path), "no such file or folder"))
            continue
        else:
            files = [path]
        for file in files:
            found, lost = read_file(file, text_field)
            docs += found
            skipped += lost
    return docs, skipped


def read_file(path: Path, text_field: str = "text") -> tuple[list[Document], list[Skipped]]:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        return [], [Skipped(str(path), f"unsupported file type {suffix or '(none)'} (use {', '.join(SUFFIXES)})")]
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return [], [Skipped(str(path), f"not UTF-8 text (byte {exc.start})")]
    except OSError as exc:
        return [], [Skipped(str(path), exc.strerror or str(exc))]
    if suffix == ".jsonl":
        return read_jsonl_rows(path, text, text_field)
    if not text.strip():
        return [], [Skipped(str(path), "empty")]
    return [Document(str(path), text)], []


def read_jsonl_rows(path: Path, text: str, text_field: str) -> tuple[list[Document], list[Skipped]]:
    """One document per row: the row's ``text_field``, named by its "id" field when it has one."""
    docs, skipped = [], []
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{line_no}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            skipped.append(Skipped(where, f"not valid JSON ({exc.msg})"))
            continue
        value = row.get(text_field) if isinstance(row, dict) else None
        if not isinstance(value, str) or not value.strip():
            skipped.append(Skipped(where, f'no non-empty string field "{text_field}"'))
            continue
        name = row.get("id")
        docs.append(Document(str(name) if isinstance(name, (str, int)) and name != "" else where, value))
    if not docs and not skipped:
        skipped.append(Skipped(str(path), "empty"))
    return docs, skipped
