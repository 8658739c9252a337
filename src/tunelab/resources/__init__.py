"""Package data written for tunelab: sample datasets, probe sets."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def path(name: str) -> Path:
    """Filesystem path of a bundled resource file."""
    return Path(str(files("tunelab.resources") / name))


def demo_split(folder: Path, test_rows: int) -> tuple[Path, Path]:
    """The shipped calendar set split (seed 0) into ``folder``/train.jsonl and test.jsonl, with
    ``test_rows`` rows held out for the test."""
    from tunelab.data import dataset
    from tunelab.data.load import write_jsonl
    from tunelab.data.split import row_key, split_indices

    rows = dataset.load_conversations(path("demo_calendar.jsonl"))
    train_idx, test_idx = split_indices([row_key(r) for r in rows], [test_rows / len(rows)], seed=0)
    write_jsonl(folder / "train.jsonl", [{"messages": rows[i]} for i in train_idx])
    write_jsonl(folder / "test.jsonl", [{"messages": rows[i]} for i in test_idx])
    return folder / "train.jsonl", folder / "test.jsonl"
