"""A toy knowledge base whose answers are known, for the retrieval tests."""

from __future__ import annotations

from pathlib import Path

TOY_DOCS = {
    "kettle.md": "The Zephyr kettle boils a litre of water in 90 seconds and switches off by itself.",
    "warranty.md": "Every Zephyr appliance carries a warranty of four years from the date of purchase.",
    "refunds.txt": "Refunds are paid back to the original card within twelve days of the return.",
    "founding.txt": "Bramble Corporation was founded in Tallinn in 2011 by three engineers.",
    "toaster.md": "The Zephyr toaster browns bread evenly with six heat settings and a bagel mode.",
}


def write_docs(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in TOY_DOCS.items():
        (folder / name).write_text(text + "\n", encoding="utf-8")
    return folder
