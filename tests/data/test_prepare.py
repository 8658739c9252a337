"""`data prepare`: deterministic, no row in two splits, every input row accounted for."""

from __future__ import annotations

import json

import pytest

from tests.conftest import write_jsonl
from tests.helpers import run_cli
from tunelab.data.split import row_key
from tunelab.data.validate import parse_file


def _rows(n: int) -> list:
    return [{"instruction": f"Question number {i} about topic {i % 7}?", "output": f"Answer {i} for topic {i % 7}."}
            for i in range(n)]


@pytest.fixture
def messy(tmp_path):
    rows = _rows(60)
    rows += [rows[3], rows[3], rows[10]]  # lines 61-63 are exact copies
    rows.append("{broken json")  # line 64
    rows.append({"instruction": "q", "output": ""})  # line 65
    rows.append({"instruction": "Mail   me  ", "output": "at bob@example.org\u00a0 please "})  # line 66
    return write_jsonl(tmp_path / "in.jsonl", rows)


def _run(capsys, tiny_model, src, out, *extra):
    code, stdout, err = run_cli(capsys, "data", "prepare", src, "--out", out, "--model", tiny_model, "--json", *extra)
    assert code == 0, err
    return json.loads(stdout)


def test_every_input_row_is_accounted_for(capsys, tiny_model, messy, tmp_path):
    card = _run(capsys, tiny_model, messy, tmp_path / "out", "--redact-pii")
    kept = [ln for s in card["splits"].values() for ln in s["lines"]]
    dropped = [d["line"] for d in card["dropped"]]
    assert sorted(kept + dropped) == list(range(1, 67))
    assert {d["line"]: d["step"] for d in card["dropped"]} == {
        61: "dedup_exact", 62: "dedup_exact", 63: "dedup_exact", 64: "validate", 65: "validate"}
    assert card["rows_in"] == 66
    assert sum(s["rows"] for s in card["splits"].values()) == 61
    assert all(s["tokens"] > 0 for s in card["splits"].values())
    on_disk = json.loads((tmp_path / "out" / "data_card.json").read_text())
    assert on_disk == card
    assert "## Dropped rows (5)" in (tmp_path / "out" / "data_card.md").read_text()


def test_cleaning_and_redaction(capsys, tiny_model, messy, tmp_path):
    _run(capsys, tiny_model, messy, tmp_path / "out", "--redact-pii", "--val", "0", "--test", "0")
    rows = [json.loads(x) for x in (tmp_path / "out" / "train.jsonl").read_text().splitlines()]
    assert {"instruction": "Mail me", "output": "at <EMAIL> please"} in rows


def test_split_is_deterministic_and_never_shares_a_row(capsys, tiny_model, messy, tmp_path):
    a = _run(capsys, tiny_model, messy, tmp_path / "a", "--seed", "7")
    b = _run(capsys, tiny_model, messy, tmp_path / "b", "--seed", "7")
    c = _run(capsys, tiny_model, messy, tmp_path / "c", "--seed", "8")
    for name in ("train", "val", "test"):
        assert (tmp_path / "a" / f"{name}.jsonl").read_bytes() == (tmp_path / "b" / f"{name}.jsonl").read_bytes()
    assert a["splits"] == b["splits"] and a["splits"] != c["splits"]
    keys = {name: {row_key(m) for m in parse_file(tmp_path / "a" / f"{name}.jsonl").messages}
            for name in ("train", "val", "test")}
    assert not keys["train"] & keys["val"] and not keys["train"] & keys["test"] and not keys["val"] & keys["test"]
    assert a["splits"]["val"]["rows"] == a["splits"]["test"]["rows"] == 6


def test_near_duplicates_are_dropped_with_near(capsys, tiny_model, tmp_path):
    rows = _rows(20) + [{"instruction": "Question number 5 about topic 5?!", "output": "Answer 5 for topic 5."}]
    card = _run(capsys, tiny_model, write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "o", "--near", "0.7")
    assert [(d["line"], d["step"]) for d in card["dropped"]] == [(21, "dedup_near")]


def test_blend_adds_general_rows_to_train_only(capsys, tiny_model, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", _rows(50))
    general = write_jsonl(tmp_path / "general.jsonl",
                          [{"messages": [{"role": "user", "content": f"General {i}?"},
                                         {"role": "assistant", "content": f"Fact {i}."}]} for i in range(100)])
    card = _run(capsys, tiny_model, src, tmp_path / "o", "--blend", f"{general}:0.2")
    train = card["splits"]["train"]
    assert train["blended"] == round(0.2 / 0.8 * 40) == 10
    assert train["rows"] == 50
    assert card["splits"]["val"]["blended"] == card["splits"]["test"]["blended"] == 0


def test_conversion_to_chat(capsys, tiny_model, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", _rows(10))
    _run(capsys, tiny_model, src, tmp_path / "o", "--to", "chat", "--val", "0", "--test", "0")
    first = json.loads((tmp_path / "o" / "train.jsonl").read_text().splitlines()[0])
    assert [m["role"] for m in first["messages"]] == ["user", "assistant"]


def test_preference_pairs_are_split(capsys, tiny_model, tmp_path):
    rows = [{"prompt": f"Q{i}", "chosen": f"Good {i}", "rejected": f"Bad {i}"} for i in range(20)]
    card = _run(capsys, tiny_model, write_jsonl(tmp_path / "p.jsonl", rows), tmp_path / "o")
    assert sum(s["rows"] for s in card["splits"].values()) == 20
    pair = json.loads((tmp_path / "o" / "train.jsonl").read_text().splitlines()[0])
    assert set(pair) == {"prompt", "chosen", "rejected"}


def test_refuses_non_empty_out_and_never_touches_input(capsys, tiny_model, messy, tmp_path):
    before = messy.read_bytes()
    code, _, err = run_cli(capsys, "data", "prepare", messy, "--out", messy.parent, "--model", tiny_model)
    assert code == 2 and "never overwritten" in err
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("keep")
    code, _, err = run_cli(capsys, "data", "prepare", messy, "--out", tmp_path / "taken", "--model", tiny_model)
    assert code == 2 and "not empty" in err and (tmp_path / "taken" / "x").read_text() == "keep"
    assert messy.read_bytes() == before
    code, _, err = run_cli(capsys, "data", "prepare", messy, "--out", tmp_path / "o", "--blend", "g.jsonl:2")
    assert code == 2 and "--blend" in err
