"""Score a whole JSONL file with a reward model in one process: `tunelab reward RUN --data FILE`.

Rows (one kind per file):
- answers: ``{"prompt": str | messages, "response": str}`` or ``{"messages": [..., assistant]}``
  (the last assistant message is the scored answer, what comes before it the prompt);
- preference pairs (``{"prompt", "chosen", "rejected"}`` or OpenAI's DPO rows): both sides are
  scored and the file's pairwise accuracy reported.

Every row is checked before the model loads, so a bad row costs no load time; the scores
go to a JSONL file written atomically, one line per input row, naming its line.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tunelab.data.formats import PREFERENCE_FORMATS, check_row, detect_row, to_pair
from tunelab.data.load import BadLine, iter_lines, write_jsonl
from tunelab.errors import DataError

SHOWN_ERRORS = 5
CHUNK = 64  # rows scored between two progress updates


@dataclass
class Item:
    line: int
    prompt: list[dict]
    answers: list[str]  # one answer, or [chosen, rejected]


def _messages(value, line: int, field: str) -> list[dict]:
    if isinstance(value, str) and value.strip():
        return [{"role": "user", "content": value}]
    if isinstance(value, list) and value and all(
            isinstance(m, dict) and m.get("role") in ("system", "user", "assistant") and isinstance(m.get("content"), str)
            for m in value):
        return [{"role": m["role"], "content": m["content"]} for m in value]
    raise ValueError(f"line {line}: field '{field}' must be a non-empty string or a list of "
                     "{role: system|user|assistant, content: string} messages")


def parse_row(obj, line: int) -> Item:
    """One row as an Item, or ValueError naming the line and the field."""
    if not isinstance(obj, dict):
        raise ValueError(f"line {line}: each line must be a JSON object")
    fmt = detect_row(obj)
    if fmt in PREFERENCE_FORMATS:
        errors, _ = check_row(obj, fmt, line)
        if errors:
            raise ValueError(f"line {line}: {errors[0].message}")
        pair = to_pair(obj, fmt)
        return Item(line, pair["prompt"], [pair["chosen"], pair["rejected"]])
    if "messages" in obj:
        messages = _messages(obj["messages"], line, "messages")
        if messages[-1]["role"] != "assistant" or len(messages) < 2:
            raise ValueError(f"line {line}: field 'messages' must end with the assistant answer to score")
        return Item(line, messages[:-1], [messages[-1]["content"]])
    answer = obj.get("response", obj.get("completion"))
    if "prompt" not in obj or answer is None:
        raise ValueError(f"line {line}: keys {sorted(obj)} match no scoring format (expected prompt+response, "
                         "messages ending with an assistant turn, or prompt+chosen+rejected)")
    if not isinstance(answer, str):
        raise ValueError(f"line {line}: field 'response' must be a string")
    return Item(line, _messages(obj["prompt"], line, "prompt"), [answer])


def read_items(path: str | Path) -> list[Item]:
    """Every row of ``path`` as an Item; DataError listing the bad lines (exit 2) if any."""
    items: list[Item] = []
    errors: list[str] = []
    for row in iter_lines(path):
        try:
            if isinstance(row, BadLine):
                raise ValueError(f"line {row.line}: {row.message}")
            items.append(parse_row(row.obj, row.line))
        except ValueError as exc:
            errors.append(str(exc))
    kinds = {len(item.answers) for item in items}
    if not errors and len(kinds) > 1:
        first = next(i for i in items if len(i.answers) != len(items[0].answers))
        errors.append(f"line {first.line}: mixes preference pairs and single answers; use one kind per file")
    if errors:
        more = f" (and {len(errors) - SHOWN_ERRORS} more)" if len(errors) > SHOWN_ERRORS else ""
        raise DataError(f"{path}: {len(errors)} bad row(s){more}: " + "; ".join(errors[:SHOWN_ERRORS]))
    if not items:
        raise DataError(f"{path}: no rows found")
    return items


def score_items(scorer, items: list[Item], progress: Callable[[int], None] | None = None,
                batch_size: int = 16) -> list[list[float]]:
    """The scores of every answer of every item (in the items' order). Answers are scored
    longest first in length-sorted batches, so a batch pads little and the first batch shows
    at once whether the longest rows fit in memory."""
    flat = [(i, k) for i, item in enumerate(items) for k in range(len(item.answers))]
    size = {key: sum(len(m["content"]) for m in items[key[0]].prompt) + len(items[key[0]].answers[key[1]])
            for key in flat}
    flat.sort(key=size.__getitem__, reverse=True)
    scores: list[list[float]] = [[0.0] * len(item.answers) for item in items]
    done = 0
    for lo in range(0, len(flat), CHUNK):
        chunk = flat[lo:lo + CHUNK]
        found = scorer.score([items[i].prompt for i, _ in chunk], [items[i].answers[k] for i, k in chunk],
                             batch_size=batch_size)
        for (i, k), value in zip(chunk, found):
            scores[i][k] = value
        rows_done = len({i for i, _ in flat[:lo + len(chunk)]})
        if progress:
            progress(rows_done - done)
        done = rows_done
    return scores


def result_rows(items: list[Item], scores: list[list[float]]) -> list[dict]:
    out = []
    for item, s in zip(items, scores):
        if len(s) == 1:
            out.append({"line": item.line, "score": round(s[0], 6)})
        else:
            out.append({"line": item.line, "chosen": round(s[0], 6), "rejected": round(s[1], 6),
                        "margin": round(s[0] - s[1], 6), "correct": s[0] > s[1]})
    return out


def summarise(rows: list[dict], seconds: float, out: Path) -> dict:
    summary: dict = {"rows": len(rows), "out": str(out), "seconds": round(seconds, 2),
                     "rows_per_s": round(len(rows) / max(seconds, 1e-9), 1)}
    if "margin" in rows[0]:
        # ties count half, as in the reward stage's held-out accuracy
        wins = sum(1.0 if r["margin"] > 0 else 0.5 if r["margin"] == 0 else 0.0 for r in rows)
        summary.update(kind="pairs", accuracy=round(wins / len(rows), 4),
                       mean_margin=round(sum(r["margin"] for r in rows) / len(rows), 4))
    else:
        values = sorted(r["score"] for r in rows)
        summary.update(kind="answers", mean_score=round(sum(values) / len(values), 4), min=values[0],
                       median=values[len(values) // 2], max=values[-1])
    return summary


def default_out(data: Path) -> Path:
    return data.with_name(data.stem + ".scores.jsonl")


def score_file(run: str | Path, data: str | Path, out: str | Path | None = None,
               progress_start: Callable[[int], Callable[[int], None]] | None = None) -> dict:
    """Score every row of ``data`` with the reward run ``run``; write one JSON line per row to
    ``out`` (default FILE.scores.jsonl beside the data) and return the summary.
    ``progress_start(total_rows)`` returns the callback told how many rows each chunk finished."""
    from tunelab.train.reward import RewardScorer, reward_run

    data = Path(data)
    reward_run(run)  # a wrong run fails before the rows are read
    items = read_items(data)
    out = Path(out) if out else default_out(data)
    if out.resolve() == data.resolve():
        raise DataError(f"{out}: --out would replace the data file; choose another path")
    start = time.perf_counter()
    scorer = RewardScorer.from_run(run)
    scores = score_items(scorer, items, progress_start(len(items)) if progress_start else None)
    rows = result_rows(items, scores)
    write_jsonl(out, rows)
    return summarise(rows, time.perf_counter() - start, out)
