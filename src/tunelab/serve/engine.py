"""The generation engine: one base model, adapters loaded on first use (LRU), and a worker
thread that batches requests arriving together and streams tokens back to each of them.

Only the worker thread touches the model, so adapters can be switched and loaded without
locks. Each batch serves one model name (the base or one adapter): a request never runs
with another request's adapter.
"""

from __future__ import annotations

import asyncio
import collections
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tunelab.errors import ModelError, RunError


class QueueFull(Exception):
    pass


@dataclass
class Job:
    model: str
    prompt_ids: list[int]
    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stops: list[str] = field(default_factory=list)
    id: str = field(default_factory=lambda: f"req-{uuid.uuid4().hex[:24]}")
    created: float = field(default_factory=time.time)
    cancelled: threading.Event = field(default_factory=threading.Event)
    loop: asyncio.AbstractEventLoop | None = None
    events: asyncio.Queue | None = None  # ("delta", text) ... ("done", finish_reason, completion_tokens)

    def emit(self, *event) -> None:
        if self.loop is not None and self.events is not None:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)


@dataclass
class Adapter:
    name: str  # served model name
    path: Path  # PEFT adapter folder


def served_name(base: str, run_name: str) -> str:
    return f"ft:{base}:{run_name}"


def find_adapters(base: str, adapters: dict[str, str], runs_dir: str | None) -> dict[str, Adapter]:
    """Served name -> adapter, from NAME=RUN_DIR pairs and every run of ``base`` under ``runs_dir``."""
    from tunelab.rundir import open_run

    found: dict[str, Adapter] = {}

    def add(name: str, run_path: Path) -> None:
        run = open_run(run_path)
        cfg = run.config()
        if cfg.model.name != base:
            raise RunError(f"{run_path}: trained on '{cfg.model.name}', but this server's base is '{base}'")
        if not (run.adapter / "adapter_config.json").is_file():
            raise RunError(f"{run_path}: has no PEFT adapter to serve (method '{cfg.method.name}'); "
                           "serve a merged export with --model instead")
        found[served_name(base, name)] = Adapter(served_name(base, name), run.adapter)

    for name, path in adapters.items():
        add(name, Path(path))
    if runs_dir:
        for child in sorted(Path(runs_dir).iterdir()) if Path(runs_dir).is_dir() else []:
            if (child / "config.yaml").is_file() and (child / "adapter" / "adapter_config.json").is_file():
                try:
                    if served_name(base, child.name) not in found:
                        add(child.name, child)
                except RunError:
                    continue  # another base model's run: not ours to serve
    return found


class Engine:
    def __init__(self, base: str, adapters: dict[str, Adapter], *, max_batch: int = 8, max_queue: int = 64,
                 cache_size: int = 4, default_max_tokens: int = 256, batch_wait: float = 0.01) -> None:
        from tunelab.models.load import load_model, load_tokenizer, resolve

        self.base_name = base
        ref = resolve(base)
        self.tokenizer = load_tokenizer(ref)
        self.model = load_model(ref).eval()
        self.context = int(getattr(self.model.config, "max_position_embeddings", 2048))
        self.adapters = adapters
        self.max_batch, self.max_queue, self.cache_size = max_batch, max_queue, cache_size
        self.default_max_tokens = default_max_tokens
        self.batch_wait = batch_wait
        self.peft = None
        self.loaded: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.queue: queue.Queue[Job] = queue.Queue()
        self.pending = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._run, name="tunelab-engine", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------ public
    def model_names(self) -> list[str]:
        return [self.base_name, *self.adapters]

    def knows(self, name: str) -> bool:
        return name == self.base_name or name in self.adapters

    def submit(self, job: Job) -> None:
        with self._lock:
            if self.pending >= self.max_queue:
                raise QueueFull()
            self.pending += 1
        self.queue.put(job)

    def close(self) -> None:
        self._stop.set()
        self.queue.put(None)  # type: ignore[arg-type]
        self._worker.join(timeout=5)

    # ------------------------------------------------------------------ worker
    def _run(self) -> None:
        while not self._stop.is_set():
            job = self.queue.get()
            if job is None:
                return
            batch = [job]
            deferred = []
            deadline = time.time() + self.batch_wait
            while len(batch) < self.max_batch:
                try:
                    nxt = self.queue.get(timeout=max(0.0, deadline - time.time()))
                except queue.Empty:
                    break
                if nxt is None:
                    self._stop.set()
                    break
                (batch if nxt.model == job.model else deferred).append(nxt)
            for d in deferred:
                self.queue.put(d)
            try:
                self._generate([j for j in batch if not j.cancelled.is_set()])
            except Exception as exc:  # a failed batch must not kill the server: tell its requests
                for j in batch:
                    j.emit("error", f"{type(exc).__name__}: {exc}")
            finally:
                with self._lock:
                    self.pending -= len(batch)
                for j in batch:
                    if j.cancelled.is_set():
                        j.emit("done", "cancelled", 0)

    def _model_for(self, name: str):
        """The model to run for ``name`` with the right adapter active (worker thread only)."""
        if name == self.base_name:
            return self.peft, None
        from peft import PeftModel

        adapter = self.adapters[name]
        if self.peft is None:
            self.peft = PeftModel.from_pretrained(self.model, str(adapter.path), adapter_name=name).eval()
        elif name not in self.peft.peft_config:
            self.peft.load_adapter(str(adapter.path), adapter_name=name)
        self.loaded[name] = None
        self.loaded.move_to_end(name)
        while len(self.loaded) > self.cache_size:
            old, _ = self.loaded.popitem(last=False)
            if old != name:
                self.peft.delete_adapter(old)
        self.peft.set_adapter(name)
        return self.peft, name

    def _generate(self, jobs: list[Job]) -> None:
        import contextlib

        import torch

        if not jobs:
            return
        peft, adapter = self._model_for(jobs[0].model)
        model = peft if peft is not None else self.model
        ctx = peft.disable_adapter() if (peft is not None and adapter is None) else contextlib.nullcontext()
        with ctx, torch.inference_mode():
            self._decode(model, jobs)

    def _decode(self, model, jobs: list[Job]) -> None:
        import torch
        from transformers import DynamicCache

        tok = self.tokenizer
        pad = tok.pad_token_id
        eos = set(_as_list(model.generation_config.eos_token_id)) | {tok.eos_token_id}
        width = max(len(j.prompt_ids) for j in jobs)
        ids = torch.full((len(jobs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(jobs), width), dtype=torch.long)
        for r, j in enumerate(jobs):
            ids[r, width - len(j.prompt_ids):] = torch.tensor(j.prompt_ids)
            mask[r, width - len(j.prompt_ids):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        gens = [torch.Generator().manual_seed(j.seed if j.seed is not None else int.from_bytes(uuid.uuid4().bytes[:4], "little"))
                for j in jobs]
        cache = DynamicCache()
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True)
        logits = out.logits[:, -1].float()
        tokens: list[list[int]] = [[] for _ in jobs]
        sent = [0] * len(jobs)
        done = [False] * len(jobs)
        last_pos = positions[:, -1]
        for step in range(max(j.max_new_tokens for j in jobs)):
            nxt = torch.empty(len(jobs), dtype=torch.long)
            for r, j in enumerate(jobs):
                nxt[r] = _sample(logits[r], j.temperature, j.top_p, gens[r]) if not done[r] else pad
            for r, j in enumerate(jobs):
                if done[r]:
                    continue
                if j.cancelled.is_set():
                    done[r] = True
                    continue
                t = int(nxt[r])
                if t in eos:
                    self._finish(j, tokens[r], sent, r, "stop")
                    done[r] = True
                    continue
                tokens[r].append(t)
                text = tok.decode(tokens[r], skip_special_tokens=True)
                cut = _stop_at(text, j.stops)
                if cut is not None:
                    self._finish(j, tokens[r], sent, r, "stop", text[:cut])
                    done[r] = True
                    continue
                if len(tokens[r]) >= j.max_new_tokens:
                    self._finish(j, tokens[r], sent, r, "length", text)
                    done[r] = True
                    continue
                safe = len(text) - max((len(s) - 1 for s in j.stops), default=0)
                if text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
                    safe = min(safe, len(text) - 1)
                if safe > sent[r]:
                    j.emit("delta", text[sent[r]:safe])
                    sent[r] = safe
            if all(done):
                break
            mask = torch.cat([mask, torch.ones((len(jobs), 1), dtype=torch.long)], dim=1)
            last_pos = last_pos + 1
            out = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=last_pos[:, None],
                        past_key_values=cache, use_cache=True)
            logits = out.logits[:, -1].float()

    def _finish(self, job: Job, toks: list[int], sent: list[int], r: int, reason: str, text: str | None = None):
        if text is None:
            text = self.tokenizer.decode(toks, skip_special_tokens=True)
        if len(text) > sent[r]:
            job.emit("delta", text[sent[r]:])
            sent[r] = len(text)
        job.emit("done", reason, len(toks))


def _as_list(value) -> list[int]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _stop_at(text: str, stops: list[str]) -> int | None:
    hits = [text.find(s) for s in stops if s and s in text]
    return min(hits) if hits else None


def _sample(logits, temperature: float, top_p: float, gen) -> int:
    import torch

    if temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, order = torch.sort(probs, descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < top_p
        sorted_p = sorted_p * keep
        probs = torch.zeros_like(probs).scatter(0, order, sorted_p)
    return int(torch.multinomial(probs / probs.sum(), 1, generator=gen))


def check_model(engine: Engine, name: str) -> None:
    if not engine.knows(name):
        raise ModelError(f"model '{name}' not found (serving: {', '.join(engine.model_names())})")
