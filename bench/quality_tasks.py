"""Real tasks for bench/quality.py and bench/auto_rules.py, built from text already on this
machine (none of it written for the benchmark):

- ``debian-synopsis``: a Debian package's long description (``/var/lib/dpkg/status``) ->
  the package's one-line synopsis, written by its maintainer. Summarisation; scored by ROUGE-L.
- ``debian-section``: a package's name and description -> its archive section (``libs``,
  ``python``, ``utils``, ...), from the same file. Classification; scored by exact match.
- ``docstring-summary``: the body of a Python standard-library docstring (signature and
  the paragraphs after the first line) -> its first line, the author's own summary. Read from
  the installed standard library's sources with ``ast``.

Each task is deduplicated on its input, shuffled with a fixed seed and split into train and
test rows (chat rows: one user and one assistant message).
"""

from __future__ import annotations

import ast
import random
import re
import sysconfig
from collections import Counter
from pathlib import Path

TASKS = ("debian-synopsis", "debian-section", "docstring-summary")
DPKG_STATUS = Path("/var/lib/dpkg/status")


def dpkg_packages(path: Path = DPKG_STATUS) -> list[dict]:
    """Every stanza of the dpkg status file with a description: name, section, synopsis, long text."""
    out = []
    for stanza in path.read_text(encoding="utf-8", errors="replace").split("\n\n"):
        fields, key = {}, None
        for line in stanza.splitlines():
            if line.startswith((" ", "\t")) and key:
                fields[key] += "\n" + line[1:]
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if "Description" not in fields or "Package" not in fields:
            continue
        synopsis, _, body = fields["Description"].partition("\n")
        paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\.\s*(?:\n|$)", body)]
        long_text = "\n\n".join(p for p in paragraphs if p)
        out.append({"package": fields["Package"], "section": fields.get("Section", "").split("/")[-1],
                    "synopsis": synopsis.strip(), "long": long_text})
    return out


def _chat(prompt: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]}


def debian_synopsis() -> list[dict]:
    seen, rows = set(), []
    for p in dpkg_packages():
        words = len(p["long"].split())
        if not 15 <= words <= 150 or p["long"] in seen or not p["synopsis"]:
            continue
        seen.add(p["long"])
        rows.append(_chat("Write the one-line synopsis of this Debian package from its description.\n\n"
                          + p["long"], p["synopsis"]))
    return rows


def debian_section() -> list[dict]:
    packages = [p for p in dpkg_packages() if p["section"] and p["long"]]
    common = [s for s, n in Counter(p["section"] for p in packages).most_common() if n >= 12][:8]
    rows = []
    for p in packages:
        if p["section"] in common:
            text = " ".join(p["long"].split()[:80])
            rows.append(_chat(f"Which Debian archive section does this package belong to? Answer with one of: "
                              f"{', '.join(sorted(common))}.\n\nPackage: {p['package']}\n{p['synopsis']}. {text}",
                              p["section"]))
    return rows


def docstring_summary(root: str | None = None) -> list[dict]:
    root_path = Path(root or sysconfig.get_paths()["stdlib"])
    seen, rows = set(), []
    for file in sorted(root_path.glob("*.py")) + sorted(root_path.glob("[a-z]*/*.py")):
        if "test" in file.parts[-2] or file.name.startswith("test"):
            continue
        try:
            tree = ast.parse(file.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                row = _docstring_row(node)
                if row and row["messages"][0]["content"] not in seen:
                    seen.add(row["messages"][0]["content"])
                    rows.append(row)
    return rows


def _docstring_row(node) -> dict | None:
    doc = ast.get_docstring(node)
    if not doc:
        return None
    first, _, rest = doc.partition("\n")
    rest = " ".join(rest.split())
    if not first.strip().endswith(".") or not 8 <= len(rest.split()) <= 120 or len(first.split()) < 4:
        return None
    if isinstance(node, ast.ClassDef):
        head = f"class {node.name}"
    else:
        head = f"def {node.name}({', '.join(a.arg for a in node.args.args)})"
    return _chat("Write the one-line summary that opens this Python docstring.\n\n"
                 f"{head}:\n{rest}", first.strip())


BUILDERS = {"debian-synopsis": debian_synopsis, "debian-section": debian_section,
            "docstring-summary": docstring_summary}


def split(task: str, train_rows: int, test_rows: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(train, test) rows of ``task``: shuffled with ``seed``, test rows first, disjoint."""
    rows = BUILDERS[task]()
    random.Random(seed).shuffle(rows)
    if len(rows) < test_rows + 20:
        raise SystemExit(f"{task}: only {len(rows)} rows on this machine")
    return rows[test_rows:test_rows + train_rows], rows[:test_rows]
