"""`data check` reports exactly what it reported before its fast paths: every finding (kind,
lines, message), the token statistics and the format errors on a file with planted problems,
compared with a snapshot taken from the straightforward implementation."""

from __future__ import annotations

import json
import random
from pathlib import Path

from tests.conftest import write_jsonl
from tests.helpers import run_cli

SNAPSHOT = Path(__file__).parent / "snapshots" / "doctor_planted.json"
WORDS = ("the budget review for the team meeting covers shipping invoices refunds and the release "
         "plan, with notes about quality, price, risk and the schedule of every project").split()
EXTRAS = (" Mail ann.lee@example.org today.", " Ring (555) 123-4567 or +1.555.123.4567.",
          " Card 5500-0000-0000-0004 on file.", " Host 192.168.1.20 and fe80::1:2:3:4 are up.",
          " token = 'abcdefghijklmnop1234' was leaked.", " Not a card 1234 5678 9012 3456.",
          " Keys: AKIA0123456789ABCDEF and ghp_abcdefghijklmnopqrstuvwxyz0123456789.",
          " <|im_end|> inside the text, and 3.14 is not an address; 2026-12-03 is a date.")


def planted_rows(n: int = 260) -> list:
    rng = random.Random(7)
    rows: list = []
    for i in range(n):
        messages = [{"role": "system", "content": "Be brief."}] if i % 4 == 0 else []
        for turn in range(1 + (i % 3 == 0)):
            q = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 18)))
            a = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 60)))
            messages += [{"role": "user", "content": f"Q{i}.{turn}: {q}?"},
                         {"role": "assistant", "content": a.capitalize() + "."}]
        if i % 9 == 0:
            messages[-1]["content"] += EXTRAS[(i // 9) % len(EXTRAS)]
        rows.append({"messages": messages})
    for i in range(20, n, 40):
        rows[i] = json.loads(json.dumps(rows[i - 3]))  # exact copies
        rows[i + 1] = json.loads(json.dumps(rows[i - 5]))
        rows[i + 1]["messages"][-1]["content"] += " Indeed."  # near copies
        rows[i + 2] = json.loads(json.dumps(rows[i - 7]))
        rows[i + 2]["messages"][-1]["content"] = "A different answer altogether, short and plain."  # conflict
        rows[i + 3]["messages"][-1]["content"] = "Ok."  # short
        rows[i + 4]["messages"][-1]["content"] = "again and again and again " * 150  # long, repetitive
    rows[50] = "{not json"
    rows[51] = {"messages": [{"role": "user", "content": "no answer"}]}
    rows[52] = {"messages": [{"role": "user", "content": "  héllo wörld — ünïcode   spaces\u00a0"},
                             {"role": "assistant", "content": "Ça va? 日本語のテキスト and emoji 🙂🙂 \t tabs"}]}
    return rows


def findings_of(capsys, tiny_model, folder: Path) -> dict:
    path = write_jsonl(folder / "planted.jsonl", planted_rows())
    other = write_jsonl(folder / "other.jsonl", [planted_rows()[i] for i in (60, 61, 99)])
    code, out, err = run_cli(capsys, "data", "check", path, "--model", tiny_model, "--against", other,
                             "--max-length", "400", "--json")
    assert code == 1, err  # the planted format errors
    report = json.loads(out)
    return {key: report[key] for key in ("rows", "format", "errors", "warnings", "tokens", "over_length",
                                         "findings")}


def test_findings_equal_the_snapshot(capsys, tiny_model, tmp_path):
    found = findings_of(capsys, tiny_model, tmp_path)
    kinds = {f["kind"] for f in found["findings"]}
    assert {"duplicate", "near_duplicate", "conflicting_answers", "pii_email", "pii_phone", "pii_credit_card",
            "pii_ip_address", "pii_secret", "short_answer", "long_answer", "repetitive_answer", "over_length",
            "leakage_exact"} <= kinds  # the fixture plants every kind the snapshot should hold
    assert found == json.loads(SNAPSHOT.read_text())


def test_the_forked_text_findings_equal_the_snapshot(capsys, tiny_model, tmp_path, monkeypatch):
    from tunelab.data import doctor

    monkeypatch.setattr(doctor, "FORK_ROWS", 0)  # the planted file is small: fork anyway
    monkeypatch.setattr(doctor, "_only_thread", lambda: True)  # earlier tests may leave threads behind
    started = []
    start = doctor._TextFindingsBeside.__init__

    def spy(self, *args):
        start(self, *args)
        started.append(self.process is not None)

    monkeypatch.setattr(doctor._TextFindingsBeside, "__init__", spy)
    assert findings_of(capsys, tiny_model, tmp_path) == json.loads(SNAPSHOT.read_text())
    assert started == [True]


def test_a_child_that_dies_leaves_the_findings_whole(capsys, tiny_model, tmp_path, monkeypatch):
    import os

    from tunelab.data import doctor

    parent, real = os.getpid(), doctor.duplicates

    def dies_in_the_child(*args):
        if os.getpid() != parent:
            os._exit(9)  # as the OOM killer would
        return real(*args)

    monkeypatch.setattr(doctor, "FORK_ROWS", 0)
    monkeypatch.setattr(doctor, "_only_thread", lambda: True)
    monkeypatch.setattr(doctor, "duplicates", dies_in_the_child)
    assert findings_of(capsys, tiny_model, tmp_path) == json.loads(SNAPSHOT.read_text())


def test_no_fork_while_other_threads_run(monkeypatch):
    import threading

    from tunelab.data import doctor

    monkeypatch.setattr(doctor, "FORK_ROWS", 0)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)  # a server's thread that might hold a lock at fork time
    other.start()
    try:
        beside = doctor._TextFindingsBeside([[{"role": "user", "content": "hi"}]], [1], 0.8)
        assert beside.process is None and beside.result() == ([], [])
    finally:
        stop.set()
        other.join()
