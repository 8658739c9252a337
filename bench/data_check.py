"""`tunelab data check` on 100k realistic rows, whole process (spawn to exit), side by side.

The rows are chat conversations of varied shape and length (an optional system message, one to
three user/assistant turns, answers from a few words to several hundred), written from real
English text: the docstrings of a fixed list of standard-library modules on this machine's
Python. A deterministic share of rows carries planted problems: exact and near copies, the same
question with two answers, e-mail addresses, phone and card numbers, IPs, secrets, very short and
looping answers. Each side runs the real CLI as its own process; sides alternate (A B A B ...) so
a change in the shared machine's load hits both alike. Prints one JSON line.

    .venv/bin/python bench/data_check.py [--rows 100000] [--repeats 2] [--before-src DIR]

``--before-src DIR`` runs a second source tree (e.g. ``git archive HEAD~3 src | tar -x -C DIR``)
beside the working tree, and checks both print the same findings.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import random
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _whole_process import loadavg, run_side  # noqa: E402

MODULES = ("json", "re", "os", "collections", "itertools", "functools", "string", "textwrap", "datetime",
           "pathlib", "subprocess", "argparse", "logging", "threading", "csv", "shutil", "tempfile", "random")
SYSTEMS = ("You are a helpful assistant.", "Answer briefly and precisely.",
           "You are a support agent for an online shop. Be polite.", "Explain like a patient teacher.")
PII = (" Write to jane.doe{i}@example.com for details.", " Call +44 20 7946 {i:04d} after nine.",
       " The card 4111 1111 1111 1111 is on file.", " The host is 10.0.{a}.{b}.",
       " Use api_key = 'AbCdEf{i:06d}ghIJKL' in the config.")


def sentences() -> list[str]:
    """Sentences of real English prose (with some code words), in a fixed order."""
    import importlib

    found: list[str] = []
    for name in MODULES:
        module = importlib.import_module(name)
        for _, obj in sorted(vars(module).items()):
            doc = inspect.getdoc(obj) if callable(obj) else None
            if doc:
                found += [s.strip() for s in re.split(r"(?<=[.!?])\s+", " ".join(doc.split())) if len(s.split()) >= 4]
    return sorted(set(found))


def _text(rng: random.Random, pool: list[str], words: int) -> str:
    out: list[str] = []
    while sum(len(s.split()) for s in out) < words:
        out.append(rng.choice(pool))
    return " ".join(out)


def make_row(i: int, rng: random.Random, pool: list[str]) -> dict:
    messages = [{"role": "system", "content": rng.choice(SYSTEMS)}] if rng.random() < 0.3 else []
    for _ in range(rng.choice((1, 1, 1, 1, 2, 3))):
        question = f"Question {i}: " + _text(rng, pool, rng.randint(5, 40))
        answer = _text(rng, pool, int(rng.lognormvariate(3.8, 0.9)) + 3)
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    if i % 97 == 0:
        messages[-1]["content"] += PII[(i // 97) % len(PII)].format(i=i, a=i % 256, b=(i // 256) % 256)
    return {"messages": messages}


def make_rows(n: int, seed: int = 0) -> list[dict]:
    """``n`` rows, the same for a given seed on a given Python, with planted problems."""
    rng = random.Random(seed)
    pool = sentences()
    rows = [make_row(i, rng, pool) for i in range(n)]
    for i in range(500, n, 1000):
        rows[i] = json.loads(json.dumps(rows[i - 7]))  # exact copy
        near = json.loads(json.dumps(rows[i - 3]))
        near["messages"][-1]["content"] += " Indeed."
        rows[i + 1] = near  # near copy
        other = json.loads(json.dumps(rows[i - 5]))
        other["messages"][-1]["content"] = _text(rng, pool, 40)
        rows[i + 2] = other  # same prompt, another answer
        rows[i + 3]["messages"][-1]["content"] = "Yes."
        rows[i + 4]["messages"][-1]["content"] = "the same line over and over again " * 40
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--before-src", default=None, help="another source tree's src/ to time beside this one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in make_rows(args.rows)))
        sides = {"after": None} if not args.before_src else {"before": args.before_src, "after": None}
        times: dict[str, list[float]] = {k: [] for k in sides}
        rss: dict[str, int] = {}
        findings: dict[str, list] = {}
        loads = [loadavg()]
        for _ in range(args.repeats):
            for name, src in sides.items():
                side = run_findings(src, path)
                times[name].append(side["process_seconds"])
                rss[name] = max(rss.get(name, 0), side["peak_rss_mb"])
                findings[name] = side["findings"]
                loads.append(loadavg())
        size_mb = round(path.stat().st_size / 1e6, 1)
    result = {"bench": "data_check", "rows": args.rows, "file_mb": size_mb, "cpus": os.cpu_count(),
              "load": loads, "seconds": times, "best_s": {k: min(v) for k, v in times.items()},
              "peak_rss_mb": rss, "findings": {k: len(v) for k, v in findings.items()}}
    if "before" in sides:
        result["speedup"] = round(min(times["before"]) / min(times["after"]), 2)
        result["same_findings"] = findings["before"] == findings["after"]
    print(json.dumps(result))


def run_findings(src: str | None, path: Path) -> dict:
    """One whole-process `data check --json`: seconds, peak RSS and its findings."""
    out = Path(path.parent) / "out.json"
    argv = ["/bin/sh", "-c", f'exec "$0" -c "from tunelab.cli import main; main()" data check "$1" '
            f'--max-length 1024 --json > "$2"', sys.executable, str(path), str(out)]
    side = run_side(argv, {"PYTHONPATH": src} if src else None)
    report = json.loads(out.read_text())
    side["findings"] = [(f["kind"], f["lines"], f["message"]) for f in report["findings"]] + [report["tokens"]]
    return side


if __name__ == "__main__":
    main()
