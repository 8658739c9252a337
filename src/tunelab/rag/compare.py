"""Fine-tuning or RAG, measured: four systems answer the same test rows greedily.

    base        the run's base model, plain prompt
    base+rag    the base model, retrieved chunks in the prompt
    tuned       the fine-tuned model, plain prompt
    tuned+rag   the fine-tuned model with retrieval

Each gets the task metrics of ``tunelab eval`` (ROUGE-L, exact match, token F1), its prompt and
answer tokens, its seconds per answer (batched generation time over rows, plus retrieval time
for the RAG systems) and its cost per 1,000 answers at an API model's prices and on this
machine; the tuned systems also carry the one-time cost of the training run. Rows whose JSON
names a "source" (or "sources") document add retrieval recall@k. A verdict in words closes it.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

from tunelab import methods
from tunelab.cost import prices
from tunelab.data import dataset
from tunelab.data.formats import prompt_and_reference
from tunelab.data.tokens import encode_prompt
from tunelab.errors import ConfigError, DataError, one_of
from tunelab.evaluate import metrics
from tunelab.events import EventSink, no_events
from tunelab.inference.generate import generate
from tunelab.inference.load import load_run, resolve_dtype
from tunelab.io import atomic_write_json, atomic_write_text
from tunelab.models.load import load_model
from tunelab.rag.index import Index, load_index
from tunelab.rag.prompt import build_prompt, context_limit
from tunelab.rag.retrieve import Hit, search
from tunelab.rag.verdict import SYSTEMS, to_markdown, verdict
from tunelab.rundir import open_run

DEFAULT_API_MODEL = "gpt-4o-mini"


@dataclass
class Rows:
    """The test rows as every system sees them."""

    prompts: list[list[dict]]
    references: list[str]
    sources: list[list[str]]  # the documents each row names (empty: none named)


def compare_rag(index: str | Path, run: str | Path, data: str | Path, *, limit: int | None = None, k: int = 4,
                retriever: str | None = None, max_new_tokens: int | None = None,
                api_model: str = DEFAULT_API_MODEL, report: str | Path | None = None,
                events: EventSink = no_events) -> dict:
    """Base, base+RAG, tuned and tuned+RAG on the rows of ``data`` (the first ``limit``).

    Writes the result as JSON and a Markdown report (``report``, default rag_compare.md in the
    run) and returns {n, data, index, retriever, k, retrieval, systems, training, verdict, samples}."""
    run_dir = open_run(run)
    cfg = run_dir.config()
    if api_model not in prices()["api"]:
        raise ConfigError(one_of("API model for prices", api_model, list(prices()["api"])))
    idx = load_index(index)
    rows = read_rows(data, limit)
    retriever = retriever or idx.retriever
    start = time.perf_counter()
    hits = [search(idx, p[-1]["content"], k, retriever) for p in rows.prompts]
    retrieve_seconds = (time.perf_counter() - start) / len(rows.prompts)
    method = methods.get(cfg.method.name)
    dtype = resolve_dtype(cfg.eval.dtype, method.name)
    loaded = load_run(run_dir.path, "eval", dtype)
    tok = loaded.tokenizer
    answer_tokens = max_new_tokens or answer_budget(cfg.eval.max_new_tokens, tok, rows.references)
    plain = [encode_prompt(tok, p) for p in rows.prompts]
    rag = rag_prompts(tok, rows, hits, context_limit(loaded.model, tok) - answer_tokens, data)
    rag_ids = [r.ids for r in rag]
    base_model, base_ctx = base_side(loaded, cfg, dtype)
    runs = [("base", base_model, base_ctx, plain), ("base+rag", base_model, base_ctx, rag_ids),
            ("tuned", loaded.model, contextlib.nullcontext, plain),
            ("tuned+rag", loaded.model, contextlib.nullcontext, rag_ids)]
    answers, systems = {}, {}
    for name, model, ctx, ids in runs:
        answers[name], seconds = answer_all(model, tok, ctx, ids, answer_tokens, cfg.eval.batch_size, name, events)
        extra = retrieve_seconds if name.endswith("+rag") else 0.0
        systems[name] = scores(tok, answers[name], rows.references, ids, seconds / len(ids) + extra)
    training = training_cost(run_dir.summary(), api_model)
    add_costs(systems, training, api_model)
    result = {"n": len(rows.prompts), "data": str(data), "index": str(idx.path), "run": str(run_dir.path),
              "retriever": retriever, "k": k, "api_model": api_model,
              "retrieval": retrieval_recall(hits, rows.sources, k), "systems": systems, "training": training,
              "samples": samples(rows, rag, answers)}
    result["verdict"] = verdict(result)
    write_report(result, Path(report) if report else run_dir.path / "rag_compare.md")
    return result


def read_rows(data: str | Path, limit: int | None) -> Rows:
    """The rows of ``data`` (validated as ``tunelab eval`` does) and the documents each names."""
    conversations = dataset.load_conversations(data)
    raw = [json.loads(line) for line in Path(data).read_text(encoding="utf-8").splitlines() if line.strip()]
    if limit is not None:
        if limit < 1:
            raise ConfigError(f"--limit must be at least 1, got {limit}")
        conversations, raw = conversations[:limit], raw[:limit]
    prompts, references = zip(*(prompt_and_reference(m) for m in conversations))
    for line, prompt in enumerate(prompts, 1):
        if not prompt or prompt[-1]["role"] != "user":
            raise DataError(f"{data}:{line}: messages: the turn before the answer must be the user's question")
    return Rows(list(prompts), list(references), [named_sources(r) for r in raw])


def rag_prompts(tok, rows: Rows, hits: list[list[Hit]], budget: int, data) -> list:
    out = []
    for line, (prompt, found) in enumerate(zip(rows.prompts, hits), 1):
        try:
            out.append(build_prompt(tok, prompt, found, budget))
        except DataError as exc:
            raise DataError(f"{data}:{line}: {exc}") from None
    return out


def named_sources(row: dict) -> list[str]:
    value = row.get("sources", row.get("source"))
    if isinstance(value, str):
        return [value]
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def answer_budget(setting: int | str, tok, references: list[str]) -> int:
    """New tokens per answer: ``eval.max_new_tokens``, or for "auto" the longest reference and
    half again plus 16 (at most 512), the rule ``tunelab eval`` uses."""
    if setting != "auto":
        return int(setting)
    longest = max((len(ids) for ids in tok(references, add_special_tokens=False)["input_ids"]), default=64)
    return min(512, int(1.5 * longest) + 16)


def base_side(loaded, cfg, dtype: str):
    """The base model and the context it computes in: an adapter run's own model with the
    adapter switched off, or a separately loaded base for a fully fine-tuned run."""
    if loaded.is_adapter:
        model = loaded.model
        return model, lambda: methods.base_only(model)
    return load_model(loaded.ref, dtype, cfg.model.trust_remote_code), contextlib.nullcontext


def answer_all(model, tok, ctx, ids: list[list[int]], max_new_tokens: int, batch_size: int, name: str,
               events: EventSink) -> tuple[list[str], float]:
    """Greedy answers to ``ids`` and the seconds they took."""
    events({"event": "eval_side", "side": name, "total": len(ids)})
    start = time.perf_counter()
    with ctx():
        out = generate(model, tok, ids, max_new_tokens=max_new_tokens, batch_size=batch_size,
                       progress=lambda n: events({"event": "generated", "side": name, "n": n}))
    return out, time.perf_counter() - start


def scores(tok, answers: list[str], references: list[str], ids: list[list[int]], seconds_per_answer: float) -> dict:
    answer_lengths = [len(a) for a in tok(answers, add_special_tokens=False)["input_ids"]] if answers else []
    return {
        "rougeL": round(metrics.rouge_l(answers, references), 4),
        "exact_match": round(metrics.exact_match(answers, references), 4),
        "token_f1": round(metrics.token_f1(answers, references), 4),
        "prompt_tokens": round(sum(map(len, ids)) / len(ids), 1),
        "answer_tokens": round(sum(answer_lengths) / max(len(answer_lengths), 1), 1),
        "seconds_per_answer": round(seconds_per_answer, 4),
    }


def training_cost(summary: dict, api_model: str) -> dict:
    """What the training run cost once: its tokens at the API's training price, and its
    measured seconds at this machine's hourly price."""
    table = prices()
    tokens = summary.get("real_tokens") or 0
    seconds = summary.get("train_seconds") or 0.0
    return {"tokens": tokens, "seconds": seconds,
            "api_usd": round(tokens / 1000 * table["api"][api_model]["training"], 4),
            "self_hosted_usd": round(seconds / 3600 * table["self_hosted"]["cpu_hour"], 6)}


def add_costs(systems: dict, training: dict, api_model: str) -> None:
    """Cost per 1,000 answers: prompt and answer tokens at the API model's per-1k prices, and the
    measured seconds at this machine's hourly price; tuned systems add their one-time cost."""
    table = prices()
    price = table["api"][api_model]
    for name, s in systems.items():
        s["api_usd_per_1k_answers"] = round(s["prompt_tokens"] * price["input"] + s["answer_tokens"] * price["output"], 4)
        s["self_hosted_usd_per_1k_answers"] = round(
            s["seconds_per_answer"] * 1000 / 3600 * table["self_hosted"]["cpu_hour"], 6)
        s["one_time_usd"] = {"api": training["api_usd"], "self_hosted": training["self_hosted_usd"]} \
            if name.startswith("tuned") else {"api": 0.0, "self_hosted": 0.0}


def retrieval_recall(hits: list[list[Hit]], sources: list[list[str]], k: int) -> dict | None:
    """Recall@k over the rows that name their source: the share whose top ``k`` chunks include a
    chunk of a named document (matched by full name, file name, or path ending)."""
    named = [(h, s) for h, s in zip(hits, sources) if s]
    if not named:
        return None
    found = sum(any(matches(hit.source, want) for hit in h for want in s) for h, s in named)
    return {"rows": len(named), f"recall@{k}": round(found / len(named), 4)}


def matches(document: str, source: str) -> bool:
    return document == source or Path(document).name == source or document.endswith("/" + source)


def samples(rows: Rows, rag: list, answers: dict, count: int = 3) -> list[dict]:
    return [{"question": rows.prompts[i][-1]["content"], "reference": rows.references[i],
             "sources": [s["source"] for s in rag[i].sources], **{n: answers[n][i] for n in SYSTEMS}}
            for i in range(min(count, len(rows.references)))]


def write_report(result: dict, path: Path) -> None:
    result["report"] = str(path)
    atomic_write_json(path.with_suffix(".json"), result)
    atomic_write_text(path, to_markdown(result))
