"""train.report_to: SFT (through the trainer) and PPO's own loop log the same metrics to a
TensorBoard event file and a local MLflow store, read back here with their own readers."""

from __future__ import annotations

import importlib.util
import json

import pytest

from tests.conftest import MEMO_ROWS, write_jsonl
from tests.helpers import run_cli

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return uri


def tensorboard_scalars(logdir) -> tuple[dict[str, list[tuple[int, float]]], list[str]]:
    """{tag: [(step, value)]} and the text tags of every event file under ``logdir``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    return ({t: [(e.step, e.value) for e in acc.Scalars(t)] for t in tags["scalars"]}, list(tags["tensors"]))


def mlflow_run(uri: str, name: str):
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])
            if r.info.run_name == name]
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return client, runs[0]


def same_series(got: list[tuple[int, float]], expected: list[tuple[int, float]]) -> bool:
    """The same steps, and values equal to float32 precision (TensorBoard stores float32)."""
    return ([s for s, _ in got] == [s for s, _ in expected]
            and [v for _, v in got] == pytest.approx([v for _, v in expected], rel=1e-6, abs=1e-6))


def history(client, run, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))


def test_sft_logs_losses_config_and_final_eval_to_tensorboard_and_mlflow(capsys, tiny_model, tmp_path, mlflow_store):
    from tunelab.rundir import RunDir
    from tunelab.train import tracking

    data = write_jsonl(tmp_path / "memo.jsonl", MEMO_ROWS * 2)
    run = tmp_path / "sft"
    code, _, err = run_cli(capsys, "train", "--model", tiny_model, "--data", data, "--out", run, "--max-steps", "4",
                           "--set", "train.logging_steps=1", "--set", "train.bf16=off", "--set", "train.lr=2e-4",
                           "--set", "train.batch_size=8", "--set", "train.epochs=1",
                           "--set", "train.eval_steps=2",
                           "--set", "train.report_to=[tensorboard, mlflow]")
    assert code == 0, err
    logged = [m for m in RunDir(run).read_metrics() if "loss" in m]
    expected = [(m["step"], m["loss"]) for m in logged]
    assert [s for s, _ in expected] == [1, 2, 3, 4]

    scalars, texts = tensorboard_scalars(run / "tensorboard")
    assert same_series(scalars["train/loss"], expected)
    evals = [(m["step"], m["eval_loss"]) for m in RunDir(run).read_metrics() if "eval_loss" in m]
    assert [s for s, _ in evals] == [2, 4]
    assert same_series(scalars["eval/loss"], evals)
    assert "tunelab/config/text_summary" in texts

    client, found = mlflow_run(mlflow_store, "sft")
    assert same_series(history(client, found, "loss"), expected)
    params = found.data.params
    assert params["tunelab.model.name"] == tiny_model and params["tunelab.train.max_steps"] == "4"
    assert params["learning_rate"] == "0.0002"  # the trainer's own arguments land in the same run

    eval_result = {"n": 8, "base": {"loss": 3.5, "rougeL": 0.1}, "tuned": {"loss": 2.25, "rougeL": 0.4},
                   "forgetting": {"delta": -0.05}}
    assert tracking.log_eval(run, eval_result) == ["tensorboard", "mlflow"]
    assert history(client, found, "final_eval/tuned/loss") == [(4, 2.25)]
    scalars, _ = tensorboard_scalars(run / "tensorboard")
    assert scalars["final_eval/forgetting/delta"] == [(4, pytest.approx(-0.05))]


def test_ppo_loop_logs_its_records_under_the_trainers_names(tiny_model, tmp_path, mlflow_store):
    from tests.train.test_ppo import PROMPTS, _policy, _settings, _shorter
    from tunelab.config import build_config
    from tunelab.io import atomic_write_text
    from tunelab.train import ppo_loop

    run = tmp_path / "ppo-run"
    run.mkdir()
    cfg = build_config(overrides={"model.name": tiny_model, "name": "ppo-run", "train.stage": "ppo"},
                       sets=["train.report_to=[tensorboard,mlflow]"])
    atomic_write_text(run / "config.yaml", cfg.to_yaml())
    model, tok = _policy(tiny_model)
    _, records = ppo_loop.train(model, tok, PROMPTS, _shorter, _settings(run, steps=3, save_steps=0))
    rewards = [(r["step"], r["reward"]) for r in records]
    assert [s for s, _ in rewards] == [1, 2, 3]

    scalars, _ = tensorboard_scalars(run / "tensorboard")
    assert same_series(scalars["train/reward"], rewards)
    assert {"train/kl", "train/policy_loss", "train/value_loss", "train/entropy"} <= set(scalars)

    client, found = mlflow_run(mlflow_store, "ppo-run")
    assert same_series(history(client, found, "reward"), rewards)
    assert found.data.params["tunelab.train.stage"] == "ppo"
    assert json.loads((run / "tracking.json").read_text())["mlflow"]["run_id"] == found.info.run_id


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed here")
def test_a_tracker_whose_package_is_missing_is_one_line_before_the_run_exists(capsys, tiny_model, memo_file, tmp_path):
    code, _, err = run_cli(capsys, "train", "--model", tiny_model, "--data", memo_file, "--out", tmp_path / "r",
                           "--max-steps", "1", "--set", "train.report_to=wandb")
    assert code == 2
    error = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(error) == 1 and err.strip().endswith(error[0])  # one error line, last, no traceback
    assert "'wandb' needs the wandb package" in error[0] and "pip install" in error[0]
    assert not (tmp_path / "r").exists()


def test_report_to_defaults_to_none_and_reads_one_name_or_none():
    from tunelab.config import build_config
    from tunelab.train.tracking import trainer_report_to

    assert trainer_report_to(build_config()) == "none"
    assert build_config(sets=["train.report_to=tensorboard"]).train.report_to == ["tensorboard"]
    assert build_config(sets=["train.report_to=none"]).train.report_to == []
