"""`tunelab reward RUN --data FILE`: a whole file scored in one process, the same scores as one
prompt at a time, pairwise accuracy for preference pairs, and bad rows named by line."""

from __future__ import annotations

import json

import pytest

from tests.conftest import write_jsonl
from tests.helpers import run_cli
from tests.train.test_stages import PAIRS, QUESTIONS, pairs, reward_run  # noqa: F401  (fixtures)


def test_answers_file_matches_one_call_scores(capsys, reward_run, tmp_path):  # noqa: F811
    rows = [{"prompt": p["prompt"], "response": p["chosen"]} for p in PAIRS[:3]]
    rows.append({"messages": [{"role": "user", "content": QUESTIONS[0]},
                              {"role": "assistant", "content": PAIRS[0]["rejected"]}]})
    data = write_jsonl(tmp_path / "answers.jsonl", rows)
    out = tmp_path / "scores.jsonl"
    code, text, err = run_cli(capsys, "reward", reward_run, "--data", data, "--out", out, "--json")
    assert code == 0, err
    summary = json.loads(text)
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    assert summary["rows"] == 4 and summary["kind"] == "answers" and [r["line"] for r in scored] == [1, 2, 3, 4]
    code, text, _ = run_cli(capsys, "reward", reward_run, "--prompt", QUESTIONS[0], "--response", PAIRS[0]["chosen"],
                            "--response", PAIRS[0]["rejected"], "--json")
    one_by_one = [r["reward"] for r in json.loads(text)]
    assert scored[0]["score"] == pytest.approx(one_by_one[0], abs=1e-4)
    assert scored[3]["score"] == pytest.approx(one_by_one[1], abs=1e-4)


def test_pairs_file_reports_accuracy(capsys, reward_run, pairs, tmp_path):  # noqa: F811
    code, text, err = run_cli(capsys, "reward", reward_run, "--data", pairs, "--json")
    assert code == 0, err
    summary = json.loads(text)
    scored = [json.loads(line) for line in (pairs.parent / "pairs.scores.jsonl").read_text().splitlines()]
    assert summary["kind"] == "pairs" and summary["rows"] == len(scored) == 2 * len(PAIRS)
    assert summary["accuracy"] == sum(r["correct"] for r in scored) / len(scored) > 0.5
    assert all(r["margin"] == pytest.approx(r["chosen"] - r["rejected"], abs=1e-5) for r in scored)


def test_bad_rows_are_named_by_line_and_nothing_is_written(capsys, reward_run, tmp_path):  # noqa: F811
    data = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "hi", "response": "hello"}, "{oops",
                                                {"prompt": "hi", "response": 3},
                                                {"messages": [{"role": "user", "content": "no answer"}]},
                                                {"question": "hi"}])
    out = tmp_path / "scores.jsonl"
    out.write_text("kept\n")
    code, _, err = run_cli(capsys, "reward", reward_run, "--data", data, "--out", out)
    assert code == 2 and err.count("\n") == 1, err
    for fragment in ("4 bad row(s)", "line 2: invalid JSON", "line 3: field 'response'",
                     "line 4: field 'messages' must end with the assistant", "line 5: keys ['question']"):
        assert fragment in err
    assert out.read_text() == "kept\n"
    code, _, err = run_cli(capsys, "reward", reward_run, "--data", data, "--prompt", "hi", "--response", "x")
    assert code == 2 and "not both" in err
