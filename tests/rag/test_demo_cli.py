"""`tunelab demo --rag`: the demo's run, then the four-way comparison on the shipped manual's
questions and on the calendar rows, printed as two tables (tiny model, two training steps)."""

from __future__ import annotations

import json

from tests.helpers import run_cli


def test_demo_rag_prints_both_comparisons(capsys, tmp_path, tiny_model):
    out = tmp_path / "demo"
    code, text, err = run_cli(capsys, "demo", "--rag", "--out", out, "--set", f"model.name={tiny_model}",
                              "--set", "train.max_steps=2", "--set", "train.bf16=off", "--set", "eval.max_new_tokens=4")
    assert code == 0, err
    assert "knowledge" in text and "format" in text
    for name in ("rag_knowledge", "rag_calendar"):
        report = json.loads((out / f"{name}.json").read_text())
        assert set(report["systems"]) == {"base", "base+rag", "tuned", "tuned+rag"}
