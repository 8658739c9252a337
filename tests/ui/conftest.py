"""A dashboard server over a runs folder with one trained and evaluated run: uvicorn in a
thread (the production settings), the tiny model, a key, a request log with content."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import MEMO_ROWS, write_jsonl
from tests.serve.conftest import KEY, thread_server

FAST = ["train.lr=1e-2", "train.batch_size=8", "train.scheduler=constant", "train.logging_steps=1", "train.bf16=off",
        "method.lora.r=8", "method.lora.dropout=0.0", "eval.max_new_tokens=6", "eval.samples=3",
        "eval.probe_questions=4"]


def train_run(model: str, data: Path, out: Path, epochs: int, events=None):
    from tunelab import api
    from tunelab.config import build_config

    cfg = build_config(overrides={"model.name": model, "data.train": str(data), "data.val": str(data),
                                  "train.epochs": epochs}, sets=FAST)
    return api.train(cfg, out=out, **({"events": events} if events else {}))


@pytest.fixture(scope="session")
def memo_data(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("ui-data") / "memo.jsonl", MEMO_ROWS)


@pytest.fixture(scope="session")
def runs_dir(tiny_model, memo_data, tmp_path_factory) -> Path:
    """runs/memo: trained for a few steps, then evaluated against its base (eval.json)."""
    from tunelab import api

    runs = tmp_path_factory.mktemp("ui-runs")
    run = train_run(tiny_model, memo_data, runs / "memo", epochs=6)
    api.evaluate(run.path, memo_data)
    return runs


@pytest.fixture(scope="session")
def jobs_db(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ui-jobs") / "jobs.sqlite"


@pytest.fixture(scope="session")
def server(tiny_model, runs_dir, jobs_db, tmp_path_factory):
    """(base URL, request log path) of a server whose dashboard lists ``runs_dir``, which
    serves the base model and runs/memo's adapter, and takes fine-tuning jobs into ``jobs_db``
    (a test runs a worker when it wants them trained)."""
    from tunelab.jobs.routes import JobsApi
    from tunelab.jobs.store import SqliteJobStore
    from tunelab.serve.app import create_app
    from tunelab.serve.auth import ApiKeys
    from tunelab.serve.engine import Engine, find_adapters
    from tunelab.serve.store import Store

    db = tmp_path_factory.mktemp("ui-log") / "log.sqlite"
    engine = Engine(tiny_model, find_adapters(tiny_model, {}, str(runs_dir)), max_batch=4, dtype="float32")
    store = Store(db, log_content=True)
    jobs = JobsApi(SqliteJobStore(jobs_db), base=tiny_model)
    app = create_app(engine, keys=ApiKeys({"default": KEY}), store=store, runs_dir=runs_dir, jobs=jobs)
    try:
        with thread_server(app) as url:
            yield url, db
    finally:
        engine.close()
        store.close()
        jobs.store.close()


def read_json(path: Path):
    return json.loads(path.read_text())
