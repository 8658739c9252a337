"""Crash-safe files: a crash, a kill or a full disk never leaves a half-written file or folder
behind, and a torn last line of a log never stops a reader.

Files and folders are written beside their target, synced, then renamed over it; the parent
folder is synced after the rename so the new name itself survives a power cut.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


def fsync_dir(folder: str | Path) -> None:
    """Make a rename or a new entry in ``folder`` durable (a no-op where folders cannot be
    opened, as on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a folder; the rename is still atomic
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` via a synced temp file in the same folder and an atomic rename."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(p.parent)


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def append_jsonl(path: str | Path, obj) -> None:
    """Append one JSON line in a single write (metrics logs: each line is complete on its own).
    After a torn last line (a kill mid-write) the new row starts on a line of its own, so only
    the torn row is lost."""
    line = (json.dumps(obj) + "\n").encode("utf-8")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        os.write(fd, line)
    finally:
        os.close(fd)


def read_jsonl(path: str | Path) -> list[dict]:
    """The JSON objects of a log file, one per line; lines that do not parse (a torn last line
    after a kill) are skipped, and a missing file reads as empty."""
    p = Path(path)
    if not p.is_file():
        return []
    rows = []
    for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def write_jsonl_atomically(path: str | Path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


# ------------------------------------------------------------------------------- folders
def fsync_tree(folder: Path) -> None:
    """Sync every file under ``folder`` and every folder in it (the folder itself last)."""
    for root, _dirs, files in os.walk(folder, topdown=False):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(root)


@contextlib.contextmanager
def atomic_folder(target: str | Path) -> Iterator[Path]:
    """Yield an empty temp folder beside ``target``; once the block finishes, sync it and swap
    it in place of ``target``. The previous ``target`` stays in place until the new one is
    complete and synced; if the block or the swap fails, the temp folder is removed and the
    previous ``target`` is back where it was.

    The swap is two renames (old -> ``.old-<name>``, new -> ``<name>``): POSIX has no portable
    atomic exchange of two folders. A crash between the two leaves ``.old-<name>``, which the
    next save (or ``recover_folder``) moves back.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_folder(target)
    _remove_stale_temps(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        fsync_tree(tmp)
        _swap_in(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _swap_in(new: Path, target: Path) -> None:
    old = _old_name(target)
    had_old = target.exists()
    if had_old:
        os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        if had_old:
            os.replace(old, target)
        raise
    fsync_dir(target.parent)
    if had_old:
        shutil.rmtree(old, ignore_errors=True)


def recover_folder(target: str | Path) -> None:
    """Undo a swap a crash cut in half: put ``.old-<name>`` back if ``<name>`` is missing, or
    drop it if the new ``<name>`` made it."""
    target = Path(target)
    old = _old_name(target)
    if not old.exists():
        return
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(old, target)
        fsync_dir(target.parent)


def _old_name(target: Path) -> Path:
    return target.with_name(f".old-{target.name}")


def _remove_stale_temps(target: Path) -> None:
    """Temp folders a killed save left beside ``target`` (never complete, never read)."""
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
