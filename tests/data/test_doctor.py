"""The data doctor names exactly the lines of each planted finding, in text and in --json."""

from __future__ import annotations

import json

import pytest

from tests.conftest import write_jsonl
from tests.helpers import run_cli


def _row(i: int) -> dict:
    topics = ["budget", "hiring", "roadmap", "security", "design", "sales", "support", "legal"]
    words = " ".join(f"{topics[i % 8]}{j}" for j in range(i % 5 + 6))
    return {"instruction": f"Summarise note number {i} about {topics[i % 8]} {words}",
            "output": f"Note {i} covers {topics[i % 8]} matters for the team in about {10 + i} words {words}."}


@pytest.fixture
def planted(tmp_path):
    rows = [_row(i) for i in range(40)]
    rows[5] = dict(rows[2])  # line 6 duplicates line 3
    rows[8] = {**rows[7], "instruction": rows[7]["instruction"] + "!"}  # line 9 near-duplicates line 8
    rows[11] = {"instruction": rows[10]["instruction"], "output": "A different answer. " + rows[11]["output"]}
    rows[14] = {**rows[14], "output": rows[14]["output"] + " Write to jane.doe@example.com about it."}  # email
    rows[16] = {**rows[16], "output": rows[16]["output"] + " Card 4111 1111 1111 1111 is on file."}  # card
    rows[18] = {**rows[18], "output": rows[18]["output"] + " Server 10.0.0.12, call +44 20 7946 0958."}  # ip, phone
    rows[20] = {**rows[20], "output": rows[20]["output"] + " key: sk-abcdefghijklmnopqrstuvwxyz0123"}  # secret
    rows[22] = {**rows[22], "output": "yes " * 300}  # line 23 long and repetitive
    rows[24] = {**rows[24], "output": "ok"}  # line 25 short
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    other = write_jsonl(tmp_path / "test.jsonl", [rows[30], {**rows[33], "output": rows[33]["output"] + " Indeed."},
                                                  _row(99)])
    return path, other


EXPECTED = {
    "duplicate": [3, 6],
    "near_duplicate": [8, 9],
    "conflicting_answers": [11, 12],
    "pii_email": [15],
    "pii_credit_card": [17],
    "pii_ip_address": [19],
    "pii_phone": [19],
    "pii_secret": [21],
    "long_answer": [23],
    "repetitive_answer": [23],
    "short_answer": [25],
    "leakage_exact": [31],
    "leakage_near": [34],
}


def test_every_planted_finding_with_its_lines_in_json(capsys, tiny_model, planted):
    path, other = planted
    code, out, err = run_cli(capsys, "data", "check", path, "--model", tiny_model, "--against", other, "--json")
    assert code == 0, err
    found = {f["kind"]: f["lines"] for f in json.loads(out)["findings"]}
    assert found == EXPECTED
    assert all(f["fix"] for f in json.loads(out)["findings"])


def test_every_planted_finding_in_text(capsys, tiny_model, planted, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    path, other = planted
    code, out, _ = run_cli(capsys, "data", "check", path, "--model", tiny_model, "--against", other)
    assert code == 0
    rows = {line.split("│")[1].strip(): line.split("│")[3].strip() for line in out.splitlines()
            if line.startswith("│") and line.split("│")[1].strip() in EXPECTED}
    assert rows == {kind: ", ".join(map(str, lines)) for kind, lines in EXPECTED.items()}


def test_over_length_names_the_long_rows(capsys, tiny_model, tmp_path):
    rows = [{"instruction": "q", "output": "short"}] * 3 + [{"instruction": "q " * 200, "output": "x"}]
    path = write_jsonl(tmp_path / "f.jsonl", [dict(r, instruction=f"{r['instruction']} {i}") for i, r in enumerate(rows)])
    code, out, _ = run_cli(capsys, "data", "check", path, "--model", tiny_model, "--max-length", "64", "--json")
    found = {f["kind"]: f["lines"] for f in json.loads(out)["findings"]}
    assert found["over_length"] == [4]


def test_plots_writes_a_png(capsys, tiny_model, planted, tmp_path):
    path, _ = planted
    code, out, _ = run_cli(capsys, "data", "check", path, "--model", tiny_model, "--plots", tmp_path / "plots",
                           "--json")
    png = tmp_path / "plots" / "lengths.png"
    assert json.loads(out)["plots"] == [str(png)]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_preference_rows_are_checked(capsys, tiny_model, tmp_path):
    rows = [
        {"prompt": "Say hi", "chosen": "Hi!", "rejected": "Go away."},
        {"prompt": "Say hi", "chosen": "Hi!", "rejected": "Hi!"},
        {"prompt": "", "chosen": "a", "rejected": "b"},
        {"prompt": "Say hi", "chosen": "", "rejected": "b"},
    ]
    code, out, _ = run_cli(capsys, "data", "check", write_jsonl(tmp_path / "p.jsonl", rows), "--model", tiny_model,
                           "--json")
    report = json.loads(out)
    assert code == 1 and report["format"] == "preference"
    assert [(e["line"], e["kind"]) for e in report["errors"]] == [(2, "identical_pair"), (3, "missing_prompt"),
                                                                 (4, "empty_side")]
    openai = [{"input": {"messages": [{"role": "user", "content": "Hi"}]},
               "preferred_output": [{"role": "assistant", "content": "Hello!"}],
               "non_preferred_output": [{"role": "assistant", "content": "What."}]},
              {"input": {"messages": []}, "preferred_output": [{"role": "assistant", "content": "x"}],
               "non_preferred_output": [{"role": "assistant", "content": "x"}]}]
    code, out, _ = run_cli(capsys, "data", "check", write_jsonl(tmp_path / "o.jsonl", openai), "--model", tiny_model,
                           "--json")
    report = json.loads(out)
    assert report["format"] == "preference_openai"
    assert [(e["line"], e["kind"]) for e in report["errors"]] == [(2, "missing_prompt"), (2, "identical_pair")]
