"""The Python API: one call per thing a user does. The CLI, the HTTP server's job workers and
scripts call only these; each is a few lines over the package that does the work.

    check_data, prepare_data, estimate       data/, cost.py
    train (and resume), rlhf, reward         train/ (one recipe per stage)
    load, reply, evaluate, compare, export   inference/, evaluate/
    demo, demo_rlhf                          the shipped recipes in resources/recipes
    serve                                    serve/
"""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from tunelab.config import RunConfig
from tunelab.data import dataset
from tunelab.data.validate import Report
from tunelab.errors import RunError
from tunelab.events import EventSink, no_events
from tunelab.inference.load import Loaded, load_run
from tunelab.models import catalog
from tunelab.rundir import RunDir, open_run

__all__ = ["check_data", "prepare_data", "estimate", "train", "rlhf", "reward", "load", "reply", "evaluate",
           "compare", "export", "demo", "demo_rlhf", "serve", "open_run", "Loaded", "RunConfig"]


# ---------------------------------------------------------------- data
def check_data(path: str | Path, model: str = catalog.DEFAULT_MODEL, max_length: int | None = None, *,
               against: str | Path | None = None, near: float | None = 0.8,
               plots: str | Path | None = None) -> Report:
    """Validate and diagnose a dataset (format, duplicates, conflicts, outliers, personal data,
    token lengths under ``model``'s chat template, leakage into ``against``)."""
    from tunelab.data.doctor import diagnose

    return diagnose(path, model, max_length, against=against, near=near, plots=plots)


def prepare_data(path: str | Path, out: str | Path, *, val: float = 0.1, test: float = 0.1, seed: int = 42,
                 near: float | None = None, redact_pii: bool = False, blend: str | None = None,
                 to: str | None = None, model: str | None = catalog.DEFAULT_MODEL, force: bool = False) -> dict:
    """Clean, dedup, redact, split (and blend) a dataset into ``out``; returns the data card."""
    from tunelab.data import prepare

    return prepare.prepare_file(path, out, val=val, test=test, seed=seed, near=near, redact_pii=redact_pii,
                                blend=blend, to=to, model=model, force=force)


def estimate(data: str | Path, *, model: str = catalog.DEFAULT_MODEL, method: str = "lora",
             epochs: float = 3.0) -> dict:
    """Training tokens, API price and self-hosted FLOPs/time/memory for fine-tuning on ``data``."""
    from tunelab import cost

    return cost.estimate_file(data, model=model, method=method, epochs=epochs)


# ---------------------------------------------------------------- train
def train(cfg: RunConfig | None = None, *, out: str | Path | None = None, resume: str | Path | None = None,
          events: EventSink = no_events) -> RunDir:
    """Train ``cfg`` into a new run directory (``out``, default runs/<name>), or continue the
    run at ``resume`` from its newest complete checkpoint."""
    from tunelab.train import setup, stages

    if resume is not None:
        run = open_run(resume)
        return stages.run(run.config(), run, events, resume=True).run_dir
    stages.check(cfg)
    return stages.run(cfg, RunDir(Path(out) if out else setup.run_path(cfg)), events).run_dir


def rlhf(config: str | Path | dict, *, out: str | Path = "runs/rlhf", events: EventSink = no_events) -> dict[str, Path]:
    """SFT -> reward model -> PPO (or RLOO) from one config (see train/rlhf.py for its shape)."""
    from tunelab.train import rlhf as pipeline

    return pipeline.run(config, Path(out), events)


def reward(run_dir: str | Path, prompt: str, responses: list[str]) -> list[float]:
    """Reward-model scores of ``responses`` to one user prompt."""
    from tunelab.train.reward import RewardScorer

    return RewardScorer.from_run(run_dir).score([[{"role": "user", "content": prompt}]] * len(responses), responses)


# ---------------------------------------------------------------- use a run
def load(target: str | Path, dtype: str = "float32", *, dequantize: bool = False,
         device_map: str | None = None) -> Loaded:
    """A run directory (base + trained weights) or a base model, ready for inference
    (``device_map`` "auto" spreads a model larger than one GPU over several)."""
    return load_run(target, "chat", dtype, dequantize=dequantize, device_map=device_map)


def reply(loaded: Loaded, messages: list[dict], *, max_new_tokens: int = 256,
          temperature: float = 0.0, top_p: float = 1.0) -> str:
    """One assistant answer to a conversation."""
    from tunelab.data.tokens import encode_prompt
    from tunelab.inference.generate import generate

    prompt = encode_prompt(loaded.tokenizer, messages)
    return generate(loaded.model, loaded.tokenizer, [prompt], max_new_tokens=max_new_tokens, seed=None,
                    batch_size=1, temperature=temperature, top_p=top_p)[0]


def evaluate(target: str | Path, data: str | Path, *, limit: int | None = None, forgetting: bool = True,
             bias: bool = True, judge: str | None = None, judge_key: str | None = None,
             fresh_base: bool = False, device_map: str | None = None, events: EventSink = no_events) -> dict:
    """Base vs tuned on the same rows (task metrics, perplexity, forgetting, bias, overfitting,
    an optional judge); writes eval.json, report.md and report.html into the run."""
    from tunelab.evaluate.run import evaluate_run

    return evaluate_run(target, data, limit=limit, forgetting=forgetting, bias=bias, judge=judge,
                        judge_key=judge_key, fresh_base=fresh_base, device_map=device_map, events=events)


def compare(run_dirs: list[str | Path]) -> list[dict]:
    """One row per run: method, size, training and (when evaluated) evaluation numbers."""
    from tunelab.evaluate.runs_table import rows

    return rows([open_run(p) for p in run_dirs])


def export(target: str | Path, out: str | Path, *, merge: bool = False, force: bool = False) -> dict:
    """A run's trained weights copied to ``out``, or (``merge``) one merged model folder
    (safetensors + tokenizer) that loads with plain transformers."""
    from tunelab.inference.export import export_run

    return export_run(open_run(target), Path(out), merge=merge, force=force)


# ---------------------------------------------------------------- demos
DEMO_TEST_ROWS = 40


def demo(out: str | Path = "runs/demo", *, sets: list[str] | None = None, events: EventSink = no_events) -> dict:
    """LoRA on the bundled calendar-entry dataset, then base vs tuned on held-out rows, with
    the recipe in resources/recipes/demo.yaml."""
    from tunelab import resources
    from tunelab.config import build_config
    from tunelab.data.load import write_jsonl
    from tunelab.data.split import row_key, split_indices

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise RunError(f"{out}: already exists and is not empty; pass another --out")
    rows = dataset.load_conversations(resources.path("demo_calendar.jsonl"))
    train_idx, test_idx = split_indices([row_key(r) for r in rows], [DEMO_TEST_ROWS / len(rows)], seed=0)
    write_jsonl(out / "demo-data" / "train.jsonl", [{"messages": rows[i]} for i in train_idx])
    write_jsonl(out / "demo-data" / "test.jsonl", [{"messages": rows[i]} for i in test_idx])
    recipe = yaml.safe_load(resources.path("recipes/demo.yaml").read_text())
    cfg = build_config(overrides=recipe | {"data.train": str(out / "demo-data" / "train.jsonl")}, sets=sets)
    start = time.perf_counter()
    run = train(cfg, out=out / "run", events=events)
    result = evaluate(run.path, out / "demo-data" / "test.jsonl", events=events)
    return {"run": str(run.path), "seconds": round(time.perf_counter() - start, 1),
            "summary": run.summary(), "eval": result}


def demo_rlhf(out: str | Path = "runs/demo-rlhf", *, model: str | None = None,
              steps: tuple[int, int, int] | None = None, events: EventSink = no_events) -> dict[str, Path]:
    """SFT -> reward model -> PPO on the shipped preference pairs, with the recipe in
    resources/recipes/demo_rlhf.yaml (``steps`` shortens it, e.g. for tests)."""
    from tunelab import resources
    from tunelab.io import atomic_write_text

    config = yaml.safe_load(resources.path("recipes/demo_rlhf.yaml").read_text())
    for i, stage in enumerate(config["stages"].values()):
        stage["data"] = str(resources.path(stage["data"]))
        if steps:
            stage["train"]["max_steps"] = steps[i]
    if model:
        config["model"] = {"name": model}
    runs = rlhf(config, out=out, events=events)
    atomic_write_text(Path(out) / "rlhf.yaml", yaml.safe_dump(config, sort_keys=False))  # the recipe, for a rerun
    return runs


# ---------------------------------------------------------------- serve
def serve(model: str = catalog.DEFAULT_MODEL, **options) -> None:
    """Serve a base model and its adapters with the OpenAI-compatible API until SIGTERM or
    Ctrl-C (adapters, runs, host, port, keys, limits: see tunelab.serve.launch.serve)."""
    from tunelab.serve.launch import serve as run_server

    run_server(model, **options)
