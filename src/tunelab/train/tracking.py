"""Experiment tracking: ``train.report_to`` (tensorboard, mlflow, wandb, trackio).

metrics.jsonl is always written; the trackers come on top. Every stage that trains through the
transformers Trainer reaches them through the trainer's own ``report_to`` (its integration
callbacks name the metrics); PPO's own loop feeds its step records to the very same callbacks
(``LoopTracker``), so a metric has one name whichever loop logged it.

Around the training loop, ``session`` opens each tracker's run itself, so it can log the run's
resolved config as params before the trainer's callbacks attach to that open run, and keeps
where the run lives in ``<run>/tracking.json``, which ``log_eval`` reads to add the final
evaluation to the same run and ``--resume`` reads to continue it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import time
from pathlib import Path

from tunelab.config import RunConfig
from tunelab.errors import ConfigError
from tunelab.io import atomic_write_json
from tunelab.rundir import RunDir

TRACKERS = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb", "trackio": "trackio"}  # name -> module
STATE_FILE = "tracking.json"
TENSORBOARD_DIR = "tensorboard"


def check(report_to: list[str]) -> None:
    """A chosen tracker whose package is missing fails here, before a run is created."""
    for name in report_to:
        if importlib.util.find_spec(TRACKERS[name]) is None:
            raise ConfigError(f"train.report_to: '{name}' needs the {TRACKERS[name]} package, which is not installed; "
                              f"pip install 'tunelab[tracking]' (tensorboard, mlflow) or pip install {TRACKERS[name]}")


def trainer_report_to(cfg: RunConfig) -> list[str] | str:
    """What the trainer's ``report_to`` gets: the chosen trackers, or "none"."""
    return list(cfg.train.report_to) or "none"


def flat_config(cfg: RunConfig) -> dict[str, str]:
    """The resolved config as ``tunelab.<section>.<key>`` params (the prefix keeps them apart
    from the trainer's own argument names)."""
    out: dict[str, str] = {}

    def walk(prefix: str, node) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}.{key}", value)
        else:
            out[prefix] = "" if node is None else str(node)

    walk("tunelab", cfg.model_dump(mode="json"))
    return out


def mlflow_uri(cfg: RunConfig) -> str:
    """MLFLOW_TRACKING_URI when set, else a local file store beside the runs (out_dir/mlruns),
    which needs no database packages; MLflow keeps file stores behind an opt-in."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or Path(cfg.out_dir).resolve().joinpath("mlruns").as_uri()
    if uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return uri


def saved_state(run_dir: RunDir) -> dict:
    path = run_dir.path / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


@contextlib.contextmanager
def session(cfg: RunConfig, run_dir: RunDir, callbacks: list = ()):
    """Each chosen tracker's run open for the training loop, with the config logged as params
    (resumed when ``<run>/tracking.json`` names one); closed after the loop, even on error.
    ``callbacks``: a trainer's callbacks, already built, whose TensorBoard writer is pointed
    at the run's tensorboard/ folder."""
    if not cfg.train.report_to:
        yield
        return
    state = saved_state(run_dir)
    params = flat_config(cfg)
    with contextlib.ExitStack() as stack:
        for name in cfg.train.report_to:
            state[name] = stack.enter_context(_OPEN[name](cfg, run_dir, params, state.get(name, {})))
        atomic_write_json(run_dir.path / STATE_FILE, state)
        for callback in callbacks:
            if type(callback).__name__ == "TensorBoardCallback":  # it read its folder when the trainer was built
                callback.logging_dir = state["tensorboard"]["logdir"]
        yield


@contextlib.contextmanager
def _tensorboard(cfg: RunConfig, run_dir: RunDir, params: dict, _saved: dict):
    from torch.utils.tensorboard import SummaryWriter

    logdir = run_dir.path / TENSORBOARD_DIR
    with SummaryWriter(str(logdir)) as writer:
        writer.add_text("tunelab/config", "\n".join(f"    {k}: {v}" for k, v in params.items()))
    before = os.environ.get("TENSORBOARD_LOGGING_DIR")
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(logdir)  # where the trainer's TensorBoardCallback writes
    try:
        yield {"logdir": str(logdir)}
    finally:
        _restore_env("TENSORBOARD_LOGGING_DIR", before)


@contextlib.contextmanager
def _mlflow(cfg: RunConfig, run_dir: RunDir, params: dict, saved: dict):
    import mlflow

    mlflow.set_tracking_uri(saved.get("tracking_uri") or mlflow_uri(cfg))
    if os.environ.get("MLFLOW_EXPERIMENT_NAME") and not saved:
        mlflow.set_experiment(os.environ["MLFLOW_EXPERIMENT_NAME"])
    run = mlflow.start_run(run_id=saved.get("run_id"), run_name=None if saved else run_dir.name)
    try:
        if not saved:
            items = list(params.items())
            for i in range(0, len(items), 100):  # MLflow takes at most 100 params per call
                mlflow.log_params(dict(items[i:i + 100]))
        yield {"tracking_uri": mlflow.get_tracking_uri(), "run_id": run.info.run_id}
    finally:
        mlflow.end_run()


@contextlib.contextmanager
def _wandb(cfg: RunConfig, run_dir: RunDir, params: dict, saved: dict):
    import wandb

    run = wandb.init(project=os.environ.get("WANDB_PROJECT", "tunelab"), name=run_dir.name, id=saved.get("id"),
                     resume="allow", config=params)
    try:
        yield {"project": run.project, "id": run.id}
    finally:
        wandb.finish()


@contextlib.contextmanager
def _trackio(cfg: RunConfig, run_dir: RunDir, params: dict, _saved: dict):
    import trackio

    # the trainer's TrackioCallback calls init again with the same project and name, and
    # resume="allow" makes that the same run
    project = os.environ.get("TRACKIO_PROJECT", "tunelab")
    trackio.init(project=project, name=run_dir.name, resume="allow", config=params)
    try:
        yield {"project": project, "name": run_dir.name}
    finally:
        trackio.finish()


_OPEN = {"tensorboard": _tensorboard, "mlflow": _mlflow, "wandb": _wandb, "trackio": _trackio}


def _restore_env(key: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value


# ------------------------------------------------------------------------------- PPO's own loop
class LoopTracker:
    """The trainer's integration callbacks driven by a loop that is not a Trainer: each step's
    record goes to ``on_log`` as the trainer's own log entry would, so the trackers name it
    exactly as they name a trainer's metric."""

    def __init__(self, cfg: RunConfig, run_dir: RunDir, model=None) -> None:
        from transformers import TrainingArguments
        from transformers.integrations import get_reporting_integration_callbacks
        from transformers.trainer_callback import TrainerControl, TrainerState

        self.args = TrainingArguments(output_dir=str(run_dir.checkpoints), report_to=trainer_report_to(cfg),
                                      run_name=run_dir.name, use_cpu=True, disable_tqdm=True)
        self.state, self.control = TrainerState(), TrainerControl()
        self.callbacks = [cls() for cls in get_reporting_integration_callbacks(list(cfg.train.report_to))]
        self.model = model

    def begin(self, step: int) -> None:
        self.state.global_step = step
        for callback in self.callbacks:
            callback.on_train_begin(self.args, self.state, self.control, model=self.model)

    def log(self, record: dict) -> None:
        self.state.global_step = int(record["step"])
        logs = {k: v for k, v in record.items() if k != "step"}
        for callback in self.callbacks:
            callback.on_log(self.args, self.state, self.control, logs=logs, model=self.model)

    def end(self) -> None:
        for callback in self.callbacks:
            callback.on_train_end(self.args, self.state, self.control, model=self.model)


@contextlib.contextmanager
def loop_session(run_path: Path | None, model=None):
    """A LoopTracker inside ``session`` for the run at ``run_path`` (None, or no trackers: None)."""
    from tunelab.train import distributed

    cfg = RunDir(run_path).config() if run_path is not None and (run_path / "config.yaml").is_file() else None
    if cfg is None or not cfg.train.report_to or not distributed.is_main():
        yield None
        return
    run_dir = RunDir(run_path)
    with session(cfg, run_dir):
        tracker = LoopTracker(cfg, run_dir, model)
        yield tracker
        tracker.end()


# ------------------------------------------------------------------------------- the final evaluation
def eval_metrics(result: dict) -> dict[str, float]:
    """The numbers of eval.json worth a chart, flattened as ``final_eval/<side>/<metric>``."""
    out: dict[str, float] = {}

    def walk(prefix: str, node) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}/{key}", value)
        elif isinstance(node, (int, float)) and not isinstance(node, bool):
            out[prefix] = float(node)

    for part in ("base", "tuned", "delta", "forgetting", "bias", "overfitting", "judge"):
        if part in result:
            walk(f"final_eval/{part}", result[part])
    return out


def log_eval(run_path: Path, result: dict) -> list[str]:
    """Add ``tunelab eval``'s numbers to the trackers the run trained with (its tracking.json);
    returns the trackers written to. The step is the run's last logged step."""
    run_dir = RunDir(Path(run_path))
    state = saved_state(run_dir)
    metrics = eval_metrics(result)
    if not state or not metrics:
        return []
    step = max((int(m.get("step", 0)) for m in run_dir.read_metrics()), default=0)
    done = []
    for name, where in state.items():
        _LOG_EVAL[name](where, metrics, step, run_dir)
        done.append(name)
    return done


def _eval_tensorboard(where: dict, metrics: dict, step: int, _run_dir: RunDir) -> None:
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(where["logdir"]) as writer:
        for key, value in metrics.items():
            writer.add_scalar(key, value, step)


def _eval_mlflow(where: dict, metrics: dict, step: int, _run_dir: RunDir) -> None:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    if where["tracking_uri"].startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(where["tracking_uri"])
    now = int(time.time() * 1000)
    client.log_batch(where["run_id"], metrics=[Metric(k, v, now, step) for k, v in metrics.items()])


def _eval_wandb(where: dict, metrics: dict, step: int, run_dir: RunDir) -> None:
    import wandb

    with wandb.init(project=where["project"], id=where["id"], resume="must") as run:
        run.log(metrics)


def _eval_trackio(where: dict, metrics: dict, step: int, run_dir: RunDir) -> None:
    import trackio

    trackio.init(project=where["project"], name=where["name"], resume="must")
    trackio.log(metrics)
    trackio.finish()


_LOG_EVAL = {"tensorboard": _eval_tensorboard, "mlflow": _eval_mlflow, "wandb": _eval_wandb, "trackio": _eval_trackio}
