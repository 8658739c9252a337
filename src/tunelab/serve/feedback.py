"""Feedback to training data: a preferred output given for a logged request becomes a
preference pair (chosen = the preferred output, rejected = what the model said)."""

from __future__ import annotations

import json
from pathlib import Path

from tunelab.data.load import write_jsonl
from tunelab.errors import DataError


def export_preferences(db: str | Path, out: str | Path) -> tuple[int, int]:
    from tunelab.serve.store import Store

    if not Path(db).is_file():
        raise DataError(f"{db}: no such request log (start `tunelab serve --db {db}` first)")
    with Store(db) as store:
        rows = store.rows(
            "SELECT r.prompt, r.answer, f.preferred_output FROM feedback f JOIN requests r "
            "ON r.id = f.request_id WHERE f.preferred_output IS NOT NULL ORDER BY f.ts")
    pairs, skipped = [], 0
    for prompt, answer, preferred in rows:
        if prompt is None or answer is None or not preferred.strip() or preferred.strip() == answer.strip():
            skipped += 1  # no logged content (--log-content was off), or nothing to prefer
            continue
        try:
            parsed = json.loads(prompt)
            prompt_msgs = parsed if isinstance(parsed, list) else [{"role": "user", "content": prompt}]
        except json.JSONDecodeError:
            prompt_msgs = [{"role": "user", "content": prompt}]
        pairs.append({"prompt": prompt_msgs, "chosen": preferred, "rejected": answer})
    write_jsonl(out, pairs)
    return len(pairs), skipped
