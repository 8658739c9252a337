"""Every method trains the real bundled model for a few steps through the CLI."""

from __future__ import annotations

import json

import pytest

from tests.conftest import write_jsonl
from tests.helpers import run_cli
from tunelab import methods, resources
from tunelab.data.load import read_rows

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def calendar(tmp_path_factory):
    rows = [r.obj for r in read_rows(resources.path("demo_calendar.jsonl"))]
    folder = tmp_path_factory.mktemp("calendar")
    return write_jsonl(folder / "train.jsonl", rows[:16]), write_jsonl(folder / "val.jsonl", rows[16:20])


@pytest.mark.parametrize("method", list(methods.METHODS))
def test_method_trains_the_bundled_model(capsys, tmp_path, calendar, method):
    train, val = calendar
    code, out, err = run_cli(capsys, "train", "--method", method, "--data", train, "--val", val,
                             "--out", tmp_path / "run", "--max-steps", "2", "--batch-size", "2")
    assert code == 0, err
    summary = json.loads((tmp_path / "run" / "run.json").read_text())
    assert summary["steps"] == 2 and summary["eval_loss"] is not None
    assert "trainable parameters" in err + out
    share = summary["trainable"]["percent"]
    assert share == pytest.approx(100.0, abs=0.01) if method == "full" else 0 < share < 5
