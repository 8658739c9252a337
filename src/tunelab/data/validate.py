"""Validate a training file and summarise it: the Report behind ``tunelab data check``."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tunelab.data.formats import (PREFERENCE_FORMATS, PROMPT_FORMATS, Finding, check_row, detect_row, fields_of,
                                  file_format, to_messages, to_pair, to_prompt)
from tunelab.data.load import BadLine
from tunelab.data.sources import UNITS, iter_rows, kind_of


@dataclass
class Report:
    path: str
    unit: str = "line"  # what a finding's number counts: line (JSONL), row (CSV) or index (see data/sources.py)
    rows: int = 0
    format: str | None = None
    errors: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    tokens: dict | None = None  # total, mean, p95, max (rendered with the model's chat template)
    over_length: int | None = None  # rows longer than max_length tokens
    max_length: int | None = None
    guidance: dict | None = None  # data-size guidance for the chosen model
    findings: list = field(default_factory=list)  # doctor.Issue: duplicates, PII, outliers, leakage, ...
    plots: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def error_counts(self) -> Counter:
        return Counter(f.kind for f in self.errors)

    def as_dict(self) -> dict:
        return {
            "path": self.path,
            "unit": self.unit,
            "rows": self.rows,
            "format": self.format,
            "errors": [f.as_dict() for f in self.errors],
            "warnings": [f.as_dict() for f in self.warnings],
            "tokens": self.tokens,
            "max_length": self.max_length,
            "over_length": self.over_length,
            "guidance": self.guidance,
            "findings": [f.as_dict() for f in self.findings],
            "plots": self.plots,
        }


@dataclass
class Parsed:
    """The valid rows of a file with their line numbers: chat messages for training formats;
    for preference formats, ``pairs`` ({prompt, chosen, rejected}) and ``messages`` holding
    prompt + chosen answer (what length and duplicate checks look at); for prompt-only formats,
    ``messages`` holding the prompt alone. ``fields`` holds each valid row's other fields (a
    reference answer for rewards to compare against, ...)."""

    format: str | None
    lines: list[int]
    messages: list[list[dict]]
    report: Report
    pairs: list[dict] = field(default_factory=list)
    fields: list[dict] = field(default_factory=list)

    @property
    def is_preference(self) -> bool:
        return self.format in PREFERENCE_FORMATS

    @property
    def is_prompt_only(self) -> bool:
        return self.format in PROMPT_FORMATS


def parse_file(path: str | Path, columns: dict[str, str] | None = None) -> Parsed:
    """Read, detect and check every row of any source (data/sources.py), its ``columns``
    renamed onto tunelab's fields; keep valid rows as messages.

    The file's format is the first valid-looking row's format; a row of another format is
    a ``mixed_format`` error (one file, one format).
    """
    report = Report(path=str(path), unit=UNITS[kind_of(path)])
    lines: list[int] = []
    messages: list[list[dict]] = []
    pairs: list[dict] = []
    fields: list[dict] = []
    for item in iter_rows(path, columns):
        if isinstance(item, BadLine):
            report.errors.append(Finding(item.line, item.kind, item.message))
            continue
        report.rows += 1
        obj = item.obj
        if not isinstance(obj, dict):
            report.errors.append(Finding(item.line, "not_object", "each row must be a JSON object"))
            continue
        fmt = detect_row(obj)
        if fmt is not None:
            fmt = file_format(fmt, report.format)
        if fmt is None:
            report.errors.append(
                Finding(item.line, "unknown_format", f"keys {sorted(obj)} match no format (expected messages | instruction+output | "
                        "prompt+completion | prompt | prompt+chosen+rejected)")
            )
            continue
        if report.format is None:
            report.format = fmt
        elif fmt != report.format:
            report.errors.append(
                Finding(item.line, "mixed_format", f"row is {fmt} but the file is {report.format}; use one format per file")
            )
            continue
        errs, warns = check_row(obj, fmt, item.line)
        report.errors.extend(errs)
        report.warnings.extend(warns)
        if not errs:
            lines.append(item.line)
            fields.append(fields_of(obj, fmt))
            if fmt in PROMPT_FORMATS:
                messages.append(to_prompt(obj, fmt))
            elif fmt in PREFERENCE_FORMATS:
                pair = to_pair(obj, fmt)
                pairs.append(pair)
                messages.append(pair["prompt"] + [{"role": "assistant", "content": pair["chosen"]}])
            else:
                messages.append(to_messages(obj, fmt))
    return Parsed(report.format, lines, messages, report, pairs, fields)


def token_stats(lengths: list[int]) -> dict:
    if not lengths:
        return {"total": 0, "mean": 0.0, "p95": 0, "max": 0}
    ordered = sorted(lengths)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {
        "total": sum(ordered),
        "mean": round(sum(ordered) / len(ordered), 1),
        "p95": p95,
        "max": ordered[-1],
    }
