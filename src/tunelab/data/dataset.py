"""Training-ready data: strict loading, splitting, encoding and the data card."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tunelab.data.sources import digest, where
from tunelab.data.split import row_key, split_indices
from tunelab.data.tokens import Encoded, encode_chat
from tunelab.data.validate import parse_file
from tunelab.errors import DataError


def load_conversations(path: str | Path, columns: dict[str, str] | None = None) -> list[list[dict]]:
    """Every row of ``path`` (any source in data/sources.py, ``columns`` renamed onto tunelab's
    fields) as chat messages; any invalid row is an error naming its position."""
    parsed = parse_file(path, columns)
    _raise_first(path, parsed.report.errors)
    if not parsed.messages:
        raise DataError(f"{path}: no rows found")
    if parsed.is_preference:
        raise DataError(f"{path}: holds preference pairs ({parsed.format}); supervised fine-tuning needs "
                        "chat, instruction or completion rows (for pairs use --stage reward or --stage dpo)")
    if parsed.is_prompt_only:
        raise DataError(f"{path}: holds prompts without answers ({parsed.format}); supervised fine-tuning needs "
                        "chat, instruction or completion rows (for prompts use --stage grpo, rloo or ppo)")
    return parsed.messages


def load_pairs(path: str | Path, columns: dict[str, str] | None = None) -> list[dict]:
    """Every row of a preference file as {prompt: messages, chosen: str, rejected: str}; any
    invalid row (identical sides, an empty side, no prompt, ...) is an error naming its position."""
    parsed = parse_file(path, columns)
    _raise_first(path, parsed.report.errors)
    if not parsed.is_preference:
        raise DataError(f"{path}: holds {parsed.format or 'no'} rows; this stage needs preference pairs "
                        '({"prompt", "chosen", "rejected"} or OpenAI\'s preference format)')
    return parsed.pairs


def load_prompts(path: str | Path, columns: dict[str, str] | None = None) -> list[list[dict]]:
    """The prompts of a file (what policy optimisation answers): prompt-only rows, a preference
    file's prompts, or every conversation up to its last assistant turn."""
    return [row["prompt"] for row in load_prompt_rows(path, columns=columns)]


def load_prompt_rows(path: str | Path, required: tuple[str, ...] = (), columns: dict[str, str] | None = None
                     ) -> list[dict]:
    """Every row of ``path`` as {"prompt": messages, **the row's other fields}; a row without
    one of the ``required`` fields (a reference a reward compares against) is an error naming
    its line."""
    from tunelab.data.formats import prompt_of

    parsed = parse_file(path, columns)
    _raise_first(path, parsed.report.errors)
    if not parsed.messages:
        raise DataError(f"{path}: no rows found")
    prompts = [p["prompt"] for p in parsed.pairs] if parsed.is_preference else [prompt_of(m) for m in parsed.messages]
    for line, fields in zip(parsed.lines, parsed.fields):
        missing = [name for name in required if fields.get(name) is None]
        if missing:
            raise DataError(f"{where(path, line)}: missing_field: no '{missing[0]}' field (a reward compares answers "
                            f"against it; fields here: {', '.join(sorted(fields)) or 'none'})")
    return [{**fields, "prompt": prompt} for prompt, fields in zip(prompts, parsed.fields)]


def _raise_first(path, errors) -> None:
    if errors:
        first = errors[0]
        more = f" (+{len(errors) - 1} more; run `tunelab data check {path}`)" if len(errors) > 1 else ""
        raise DataError(f"{where(path, first.line)}: {first.kind}: {first.message}{more}")


def split_train_val(rows: list[list[dict]], fraction: float, seed: int) -> tuple[list, list]:
    if len(rows) < 2:
        raise DataError(f"need at least 2 rows to hold out a validation split, got {len(rows)}")
    train_idx, val_idx = split_indices([row_key(r) for r in rows], [fraction], seed)
    return [rows[i] for i in train_idx], [rows[i] for i in val_idx]


@dataclass
class EncodedSplit:
    rows: list[Encoded]
    dropped: int  # rows with no target token left after truncation
    truncated: int


def encode_split(tokenizer, rows: list[list[dict]], max_length: int, train_on_inputs: bool) -> EncodedSplit:
    kept, dropped, truncated = [], 0, 0
    for messages in rows:
        enc = encode_chat(tokenizer, messages, max_length, train_on_inputs)
        truncated += enc.truncated
        if enc.target_tokens == 0:
            dropped += 1
            continue
        kept.append(enc)
    return EncodedSplit(kept, dropped, truncated)


def data_card(sources: dict[str, str | None], splits: dict[str, EncodedSplit]) -> dict:
    return {
        "sources": {k: {"path": str(v), "sha256": digest(v)} for k, v in sources.items() if v},
        "splits": {
            name: {
                "rows": len(s.rows),
                "dropped_no_target_tokens": s.dropped,
                "truncated": s.truncated,
                "tokens": sum(len(e.input_ids) for e in s.rows),
                "target_tokens": sum(e.target_tokens for e in s.rows),
            }
            for name, s in splits.items()
        },
    }
