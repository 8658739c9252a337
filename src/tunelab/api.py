"""The Python API: one call per thing a user does, each a few lines over the package doing it.

    check_data, prepare_data, estimate       data/, cost.py
    train (and resume), rlhf, reward         train/ (one recipe per stage)
    load, reply, evaluate, compare, export   inference/, evaluate/
    rag_index, rag_ask, compare_rag          rag/
    demo, demo_rlhf, demo_rag                the shipped recipes in resources/recipes
    serve                                    serve/
"""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from tunelab.config import RunConfig
from tunelab.data.validate import Report
from tunelab.errors import RunError
from tunelab.events import EventSink, no_events
from tunelab.inference.load import Loaded, load_run
from tunelab.models import catalog
from tunelab.rundir import RunDir, open_run  # noqa: F401  (api.open_run: the CLI opens runs through here)


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
             epochs: float = 3.0, chat_template: str | None = None) -> dict:
    """Training tokens, API price and self-hosted FLOPs/time/memory for fine-tuning on ``data``."""
    from tunelab.cost import estimate_file

    return estimate_file(data, model=model, method=method, epochs=epochs, chat_template=chat_template)


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
    from tunelab.inference.generate import answer_chat

    return answer_chat(loaded.model, loaded.tokenizer, messages, max_new_tokens, temperature, top_p)


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


# ---------------------------------------------------------------- retrieval
def rag_index(docs: list[str | Path], out: str | Path, **options) -> dict:
    """Chunk and index documents for retrieval (options: rag.index.build_index); the manifest."""
    from tunelab.rag.index import build_index

    return build_index(docs, out, **options)


def rag_ask(index: str | Path, target: str | Path, question: str, **options) -> dict:
    """Answer ``question`` with a model or run from the chunks ``index`` retrieves: answer, sources."""
    from tunelab.rag.answer import ask

    return ask(index, target, question, **options)


def compare_rag(index: str | Path, run: str | Path, data: str | Path, **options) -> dict:
    """Base, base+RAG, tuned and tuned+RAG on the same rows: metrics, cost, a verdict."""
    from tunelab.rag.compare import compare_rag as compare

    return compare(index, run, data, **options)


# ---------------------------------------------------------------- demos
DEMO_TEST_ROWS = 40


def demo(out: str | Path = "runs/demo", *, sets: list[str] | None = None, events: EventSink = no_events) -> dict:
    """LoRA on the bundled calendar-entry dataset, then base vs tuned on held-out rows, with
    the recipe in resources/recipes/demo.yaml."""
    from tunelab import resources
    from tunelab.config import build_config

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise RunError(f"{out}: already exists and is not empty; pass another --out")
    train_file, test_file = resources.demo_split(out / "demo-data", DEMO_TEST_ROWS)
    recipe = yaml.safe_load(resources.path("recipes/demo.yaml").read_text())
    cfg = build_config(overrides=recipe | {"data.train": str(train_file)}, sets=sets)
    start = time.perf_counter()
    run = train(cfg, out=out / "run", events=events)
    result = evaluate(run.path, test_file, events=events)
    return {"run": str(run.path), "seconds": round(time.perf_counter() - start, 1),
            "summary": run.summary(), "eval": result}


def demo_rlhf(out: str | Path = "runs/demo-rlhf", *, model: str | None = None,
              steps: tuple[int, int, int] | None = None, events: EventSink = no_events) -> dict[str, Path]:
    """SFT -> reward model -> PPO on the shipped preference pairs, with the recipe in
    resources/recipes/demo_rlhf.yaml (``steps`` shortens it, e.g. for tests)."""
    from tunelab.io import atomic_write_text
    from tunelab.train.rlhf import demo_config

    config = demo_config(model, steps)
    runs = rlhf(config, out=out, events=events)
    atomic_write_text(Path(out) / "rlhf.yaml", yaml.safe_dump(config, sort_keys=False))  # the recipe, for a rerun
    return runs


def demo_rag(out: str | Path = "runs/demo-rag", *, sets: list[str] | None = None,
             events: EventSink = no_events) -> dict:
    """The demo's LoRA run, then the four-way comparison (base, base+RAG, tuned, tuned+RAG) on
    questions about a shipped manual (knowledge) and on the held-out calendar rows (a format)."""
    from tunelab.rag.demo import run_demo

    trained = demo(out, sets=sets, events=events)
    return {"demo": trained, **run_demo(trained["run"], Path(out) / "demo-data" / "test.jsonl", out, events=events)}


# ---------------------------------------------------------------- serve
def serve(model: str = catalog.DEFAULT_MODEL, **options) -> None:
    """Serve a base model and its adapters with the OpenAI-compatible API until SIGTERM or
    Ctrl-C (adapters, runs, host, port, keys, limits: see tunelab.serve.launch.serve)."""
    from tunelab.serve.launch import serve as run_server

    run_server(model, **options)
