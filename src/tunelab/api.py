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
from tunelab.inference.load import Loaded, load_run, resolve_dtype
from tunelab.models import catalog
from tunelab.rundir import RunDir, open_run
from tunelab import methods  # (the evaluation below moves to evaluate/)
from tunelab.data.formats import prompt_and_reference
from tunelab.data.tokens import encode_prompt
from tunelab.models.load import load_model

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
def load(target: str | Path, dtype: str = "float32", *, dequantize: bool = False) -> Loaded:
    """A run directory (base + trained weights) or a base model, ready for inference."""
    return load_run(target, "chat", dtype, dequantize=dequantize)


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
             fresh_base: bool = False, events: EventSink = no_events) -> dict:
    """Base vs tuned on the same rows (loss, perplexity, ROUGE-L, BLEU, exact match, token F1,
    samples), plus general-knowledge forgetting, bias probes, overfitting and an optional judge.
    Writes eval.json, report.md and report.html into the run.

    The base model's results are reused from an earlier evaluation of the same base on the same
    rows with the same settings (``eval.reuse_base``); ``fresh_base`` computes them again."""
    from contextlib import nullcontext

    from tunelab.evaluate import basecache
    from tunelab.evaluate import bias as bias_probe
    from tunelab.evaluate import forgetting as forget
    from tunelab.evaluate import metrics, overfit, report
    from tunelab.inference.generate import generate, generate_and_score, is_prompt_learning

    run = open_run(target)
    cfg = run.config()
    rows = dataset.load_conversations(data)
    limit = limit or cfg.eval.limit
    rows = rows[:limit] if limit else rows
    method = methods.get(cfg.method.name)
    dtype = resolve_dtype(cfg.eval.dtype, method.name)
    loaded = load(run.path, dtype)
    base_model = None if loaded.is_adapter else load_model(loaded.ref, dtype, cfg.model.trust_remote_code)
    tok = loaded.tokenizer
    prompts, refs = zip(*(prompt_and_reference(m) for m in rows))
    refs = list(refs)
    prompt_ids = [encode_prompt(tok, p) for p in prompts]
    encoded = dataset.encode_split(tok, list(rows), cfg.data.max_length, False).rows
    continuations = _continuations(tok, rows, prompt_ids, cfg.data.max_length)
    questions = forget.probe_questions()
    if cfg.eval.probe_questions and len(questions) > cfg.eval.probe_questions:
        step = len(questions) / cfg.eval.probe_questions
        questions = [questions[int(i * step)] for i in range(cfg.eval.probe_questions)]

    def model_for(name: str):
        model = loaded.model if name == "tuned" or base_model is None else base_model
        ctx = methods.base_only(loaded.model) if (name == "base" and loaded.is_adapter) else nullcontext()
        return model, ctx

    def gen(model, name: str, ids: list[list[int]], max_new: int, label: str) -> list[str]:
        events({"event": "eval_side", "side": f"{label} ({name})", "total": len(ids)})
        return generate(model, tok, ids, max_new_tokens=max_new, batch_size=cfg.eval.batch_size,
                        progress=lambda k: events({"event": "generated", "side": f"{label} ({name})", "n": k}))

    max_new = cfg.eval.max_new_tokens
    if max_new == "auto":  # room for every reference answer, not for a base model's rambling
        longest = max((len(ids) for ids in tok(refs, add_special_tokens=False)["input_ids"]), default=64)
        max_new = min(512, int(1.5 * longest) + 16)

    identity = None
    if cfg.eval.reuse_base:
        identity = basecache.base_identity(loaded.ref.source, base_model if base_model is not None else loaded.model)
    reused: list[str] = []

    def once(name: str, part: str, settings: dict, compute, required: tuple[str, ...]):
        """The base side's ``part`` as an earlier evaluation left it, or computed (and kept;
        with ``fresh_base``, computed again and kept in place of the earlier one)."""
        if name != "base" or identity is None:
            return compute()
        key = basecache.key(identity, part, {"dtype": dtype, "trust_remote_code": cfg.model.trust_remote_code,
                                             **basecache.runtime(model_for(name)[0]), **settings})
        value = None if fresh_base else basecache.get(key, required)
        if value is None:
            value = compute()
            basecache.put(key, value)
        else:
            reused.append(part)
            events({"event": "note", "text": f"{part} (base): reused from an earlier eval"})
        return value

    def side(name: str) -> dict:
        if name == "tuned" and loaded.is_adapter and method.can_merge and not getattr(loaded.model, "is_quantized", False):
            # the base side is done. In fp32, fold the adapter into the weights so decoding runs
            # plain matmuls. In bf16 that would round small updates away (W + dW stored in 8
            # bits of mantissa); keep the adapter beside the weights but in the same dtype, which
            # saves casting every activation to fp32 for it (100 calendar rows: 23.4 s -> 15.7 s,
            # 99 of 100 answers identical).
            if dtype == "float32":
                loaded.model = loaded.model.merge_and_unload()
            else:
                import torch

                for param in loaded.model.parameters():
                    if param.dtype == torch.float32:
                        param.data = param.data.to(_torch_dtype(dtype))
        model, ctx = model_for(name)
        prompt_learning = is_prompt_learning(model)

        def task() -> dict:
            if continuations and not prompt_learning:  # one prefill serves loss and answers
                events({"event": "eval_side", "side": f"task ({name})", "total": len(prompt_ids)})
                answers, loss = generate_and_score(
                    model, tok, prompt_ids, continuations, max_new_tokens=max_new, batch_size=cfg.eval.batch_size,
                    progress=lambda k: events({"event": "generated", "side": f"task ({name})", "n": k}))
            else:
                loss = metrics.reference_loss(model, encoded, batch_size=cfg.eval.batch_size)
                answers = gen(model, name, prompt_ids, max_new, "task")
            return {"answers": answers, "loss": loss}

        with ctx:
            scored = once(name, "task", {
                "prompts": prompt_ids, "max_new_tokens": max_new, "batch_size": cfg.eval.batch_size,
                "prompt_learning": prompt_learning,
                "references": continuations if continuations and not prompt_learning
                else [[e.input_ids, e.labels] for e in encoded]}, task, ("answers", "loss"))
            answers, loss = scored["answers"], scored["loss"]
            out: dict = {"scores": {
                "loss": round(loss, 4),
                "perplexity": round(metrics.perplexity(loss), 4),
                "rougeL": round(metrics.rouge_l(answers, refs), 4),
                "bleu": round(metrics.bleu(answers, refs), 4),
                "exact_match": round(metrics.exact_match(answers, refs), 4),
                "token_f1": round(metrics.token_f1(answers, refs), 4),
            }, "answers": answers}
            if forgetting:
                q_ids = [encode_prompt(tok, [{"role": "user", "content": q["question"]}]) for q in questions]
                ask = lambda _qs: gen(model, name, q_ids, 24, "general QA")  # noqa: E731
                out["forgetting"] = once(name, "forgetting", {
                    "questions": questions, "prompts": q_ids, "batch_size": cfg.eval.batch_size,
                    "prompt_learning": prompt_learning, "prose": forget.probe_prose()},
                    lambda: forget.side(model, tok, ask, rows=questions), ("qa_accuracy", "prose_perplexity"))
            if bias:
                def probe() -> dict:
                    events({"event": "note", "text": f"bias probes ({name})"})
                    return bias_probe.scores(model, tok)

                out["bias"] = once(name, "bias", {"probes": bias_probe.probes(), "prompt_learning": prompt_learning},
                                   probe, tuple(bias_probe.probes()["axes"]))
        return out

    start = time.perf_counter()
    base, tuned = side("base"), side("tuned")
    result = {
        "n": len(rows),
        "data": str(data),
        "base": base["scores"],
        "tuned": tuned["scores"],
        "base_reused": reused,
        "overfitting": overfit.analyse(run.read_metrics()),
        "samples": [
            {"prompt": prompts[i][-1]["content"], "reference": refs[i],
             "base": base["answers"][i], "tuned": tuned["answers"][i]}
            for i in range(min(cfg.eval.samples, len(rows)))
        ],
    }
    if forgetting:
        result["forgetting"] = {"base": base["forgetting"], "tuned": tuned["forgetting"],
                                "delta": forget.delta(base["forgetting"], tuned["forgetting"])}
    if bias:
        result["bias"] = bias_probe.compare(base["bias"], tuned["bias"])
    if judge:
        from tunelab.evaluate import judge as judging

        events({"event": "note", "text": f"judging with {judge}"})
        verdicts = judging.win_rate(judging.make_judge(judge, judge_key), [p[-1]["content"] for p in prompts], refs,
                                    base["answers"], tuned["answers"], seed=cfg.train.seed)
        result["judge"] = {"judge": judge, **verdicts}
    result["seconds"] = round(time.perf_counter() - start, 1)
    previous = run.path / "eval.json"
    if previous.is_file():
        import json

        old = json.loads(previous.read_text())
        pref = old.get("preference") or (old if "stage" in old else None)
        if pref:
            result["preference"] = pref  # a preference stage's own measurements stay with the run
    report.write(run, result)
    return result


def _continuations(tok, rows, prompt_ids, max_length) -> list[tuple[list[int], list[int]]] | None:
    """Each row's reference answer as (token ids, labels) continuing its generation prompt, or
    None when some row's training encoding does not start with that prompt (a chat template
    that renders the prompt differently once the answer follows) or scores earlier turns."""
    out = []
    for messages, prompt in zip(rows, prompt_ids):
        enc = dataset.encode_chat(tok, list(messages), max_length, False)
        n = len(prompt)
        if enc.input_ids[:n] != prompt or any(label != -100 for label in enc.labels[:n]):
            return None
        out.append((enc.input_ids[n:], enc.labels[n:]))
    return out


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
def serve(**options) -> None:
    """Serve a base model and its adapters with the OpenAI-compatible API until stopped
    (options: see tunelab.serve.launch.serve)."""
    from tunelab.serve.launch import serve as run_server

    run_server(**options)
