"""Every run with validation rows ends with the weights of its best validation loss, early
stopping or not, and says which step that was (run.json, train_report.md)."""

from __future__ import annotations

import pytest

from tests.conftest import MEMO_ROWS, write_jsonl
from tunelab import api
from tunelab.config import build_config
from tunelab.data import dataset
from tunelab.evaluate.metrics import reference_loss


def test_a_rising_validation_loss_ends_on_the_earlier_best(tiny_model, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", MEMO_ROWS)
    # the same prompts with other answers: the better the model learns train, the worse val gets
    val = write_jsonl(tmp_path / "val.jsonl", [{**r, "output": r["output"][::-1] + "x"} for r in MEMO_ROWS])
    cfg = build_config(overrides={"model.name": tiny_model, "data.train": str(train), "data.val": str(val)},
                       sets=["train.epochs=24", "train.lr=1e-2", "train.batch_size=8", "train.scheduler=constant",
                             "train.bf16=off", "train.eval_steps=2", "train.warmup_ratio=0", "method.lora.r=8"])
    run = api.train(cfg, out=tmp_path / "run")
    summary = run.summary()
    evals = [(m["step"], m["eval_loss"]) for m in run.read_metrics() if "eval_loss" in m]
    best_step, best_loss = min(evals, key=lambda e: e[1])
    assert summary["steps"] == 24 and not summary["stopped_early"]  # no early stopping asked for
    assert evals[-1][1] > best_loss and best_step < 24  # validation loss rose by the end
    assert summary["best_step"] == best_step and summary["best_eval_loss"] == pytest.approx(best_loss, abs=1e-4)
    assert summary["eval_loss"] == pytest.approx(best_loss, abs=1e-4)
    loaded = api.load(run.path)
    rows = dataset.encode_split(loaded.tokenizer, dataset.load_conversations(val), 512, False).rows
    assert reference_loss(loaded.model, rows) == pytest.approx(best_loss, abs=1e-3)  # the saved adapter is the best
    report = (run.path / "train_report.md").read_text()
    assert f"Best checkpoint: step **{best_step}** of 24" in report

