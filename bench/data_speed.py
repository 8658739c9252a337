"""How fast `data check` and `data prepare` stream a large file.

Generates N rows of typical instruction data (varied lengths, a few duplicates and some
personal data), then times `tunelab.api.check_data` and `tunelab.api.prepare_data` on it with
the bundled model's tokenizer. Prints one JSON line.

    .venv/bin/python bench/data_speed.py [--rows 100000]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

WORDS = ("the a team meeting budget plan review customer order shipping invoice report data model train "
         "evaluate deploy server request answer question summary note email call schedule project risk "
         "quality price product feature release bug fix test user account payment refund policy").split()


def make_rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        q = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 30)))
        a = " ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 120)))
        if i % 500 == 0:
            a += f" contact user{i}@example.com"
        rows.append({"instruction": f"Q{i}: {q}?", "input": "", "output": a + "."})
        if i % 1000 == 999:
            rows.append(dict(rows[-1]))  # an exact duplicate now and then
    return rows[:n]


def main() -> None:
    from tunelab import api
    from tunelab.models.catalog import DEFAULT_MODEL
    from tunelab.models.load import load_tokenizer, resolve

    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "big.jsonl"
        src.write_text("".join(json.dumps(r) + "\n" for r in make_rows(args.rows)))
        size_mb = round(src.stat().st_size / 1e6, 1)
        load_tokenizer(resolve(DEFAULT_MODEL))  # convert/cache the bundled model outside the timing
        start = time.perf_counter()
        report = api.check_data(src, max_length=512)
        check_s = time.perf_counter() - start
        start = time.perf_counter()
        card = api.prepare_data(src, Path(tmp) / "out")
        prepare_s = time.perf_counter() - start
    print(json.dumps({
        "rows": args.rows, "file_mb": size_mb,
        "check_s": round(check_s, 1), "prepare_s": round(prepare_s, 1),
        "findings": len(report.findings), "dropped": len(card["dropped"]),
    }))


if __name__ == "__main__":
    main()
