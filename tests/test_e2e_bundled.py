"""End to end on the real bundled SmolLM2-135M, through the CLI (a few steps, not an epoch)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import write_jsonl
from tests.helpers import run_cli
from tunelab import resources
from tunelab.data.load import read_rows

pytestmark = pytest.mark.slow


def test_bundled_model_trains_and_evaluates_through_the_cli(capsys, tmp_path):
    rows = [r.obj for r in read_rows(resources.path("demo_calendar.jsonl"))]
    train = write_jsonl(tmp_path / "train.jsonl", rows[:40])
    test = write_jsonl(tmp_path / "test.jsonl", rows[-6:])

    code, out, err = run_cli(capsys, "data", "check", train, "--json")
    assert code == 0, err
    assert json.loads(out)["tokens"]["mean"] > 50

    code, out, err = run_cli(capsys, "train", "--data", train, "--out", tmp_path / "run", "--max-steps", "6",
                             "--batch-size", "4", "--lr", "5e-4")
    assert code == 0, err
    summary = json.loads((tmp_path / "run" / "run.json").read_text())
    assert summary["steps"] == 6 and 1.0 < summary["trainable"]["percent"] < 2.0

    code, out, err = run_cli(capsys, "eval", tmp_path / "run", "--data", test, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["n"] == 6
    assert result["tuned"]["loss"] < result["base"]["loss"]  # six steps already move it toward the format

    code, out, err = run_cli(capsys, "chat", "--model", "smollm2-135m-instruct", "--prompt",
                             "What is the capital of France?", "--max-new-tokens", "12")
    assert code == 0 and "Paris" in out
