"""Early stopping: a validation curve that rises stops training and the best weights come back."""

from __future__ import annotations

import json

import pytest

from tests.conftest import MEMO_ROWS, write_jsonl
from tests.helpers import run_cli
from tunelab import api
from tunelab.config import build_config
from tunelab.data import dataset
from tunelab.evaluate.metrics import reference_loss


def test_rising_validation_loss_stops_and_restores_the_best(tiny_model, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", MEMO_ROWS)
    # the same prompts with other answers: the better the model learns train, the worse val gets
    val = write_jsonl(tmp_path / "val.jsonl", [{**r, "output": r["output"][::-1] + "x"} for r in MEMO_ROWS])
    cfg = build_config(overrides={"model.name": tiny_model, "data.train": str(train), "data.val": str(val),
                                  "train.epochs": 60},
                       sets=["train.lr=1e-2", "train.batch_size=8", "train.scheduler=constant", "train.bf16=off",
                             "train.eval_steps=2", "train.early_stopping_patience=2", "train.warmup_ratio=0",
                             "train.logging_steps=1"])
    run = api.train(cfg, out=tmp_path / "run")
    summary = run.summary()
    evals = [(m["step"], m["eval_loss"]) for m in run.read_metrics() if "eval_loss" in m]
    best_step, best_loss = min(evals[:-1], key=lambda e: e[1])  # the last entry is the final re-evaluation
    assert summary["stopped_early"] and summary["steps"] < 60
    assert summary["best_step"] == best_step
    loaded = api.load(run.path)
    rows = dataset.encode_split(loaded.tokenizer, dataset.load_conversations(val), 512, False).rows
    assert reference_loss(loaded.model, rows) == pytest.approx(best_loss, abs=1e-3)
    assert summary["eval_loss"] == pytest.approx(best_loss, abs=1e-3)


def test_compare_lists_every_run(capsys, tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "memo.jsonl", MEMO_ROWS)
    for name, method in (("one", "lora"), ("two", "ia3")):
        code, _, err = run_cli(capsys, "train", "--model", tiny_model, "--method", method, "--data", data,
                               "--out", tmp_path / name, "--max-steps", "2", "--set", "train.bf16=off")
        assert code == 0, err
    code, out, err = run_cli(capsys, "eval", tmp_path / "one", "--data", data, "--no-bias", "--json")
    assert code == 0, err
    code, out, err = run_cli(capsys, "compare", tmp_path / "one", tmp_path / "two", "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["run"] for r in rows] == ["one", "two"] and [r["method"] for r in rows] == ["lora", "ia3"]
    assert rows[0]["rougeL"] is not None and rows[0]["QA drop"] is not None and rows[1]["rougeL"] is None
    code, _, err = run_cli(capsys, "compare", tmp_path / "one", tmp_path / "nope")
    assert code == 2 and "no such run directory" in err
