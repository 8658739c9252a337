"""Dataset plots (matplotlib, headless)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def length_histogram(lengths: list[int], out: Path, title: str = "") -> Path:
    """A histogram of row lengths in tokens, written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=110)
    ax.hist(lengths, bins=min(50, max(5, len(set(lengths)))), color="#4a7fb5", edgecolor="white")
    ax.set_xlabel("tokens per row (chat template applied)")
    ax.set_ylabel("rows")
    ax.set_title(f"Row lengths{': ' + title if title else ''} (n={len(lengths)})")
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=out.parent)
    os.close(fd)
    try:
        fig.savefig(tmp)
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)
    return out
