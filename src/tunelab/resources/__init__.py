"""Package data written for tunelab: sample datasets, probe sets."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def path(name: str) -> Path:
    """Filesystem path of a bundled resource file."""
    return Path(str(files("tunelab.resources") / name))
