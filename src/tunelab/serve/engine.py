"""The generation engine: one base model, adapters loaded on first use (LRU), and a worker
thread that batches requests (continuous batching) and streams tokens back to each of them.

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

from tunelab.errors import RunError


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
        if cfg.train.stage == "reward":
            raise RunError(f"{run_path}: is a reward model (a score head, not a chat model); score answers with "
                           "`tunelab reward`")
        if cfg.method.name in ("prefix", "prompt"):
            raise RunError(f"{run_path}: method '{cfg.method.name}' prepends trained tokens to every forward pass, "
                           "which the batching engine cannot share between requests; serve LoRA, DoRA, QLoRA or IA3 "
                           "adapters (use `tunelab chat` for this run)")
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
                 cache_size: int = 4, default_max_tokens: int = 256, batch_wait: float = 0.01,
                 dtype: str = "auto") -> None:
        from tunelab.models.load import load_model, load_tokenizer, resolve
        from tunelab.device import bf16_available

        self.base_name = base
        ref = resolve(base)
        self.tokenizer = load_tokenizer(ref)
        if dtype == "auto":  # decoding reads every weight per token: bf16 halves the bytes
            dtype = "bfloat16" if bf16_available() else "float32"
        self.dtype = dtype
        self.model = load_model(ref, dtype).eval()
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
    # Continuous batching: between two decode steps, waiting requests for the model that is
    # running are prefilled and join the batch, and finished ones leave it, so a request
    # never waits for a whole batch to end.
    def _run(self) -> None:
        batch: _Batch | None = None
        deferred: list[Job] = []
        while not self._stop.is_set():
            if batch is None:
                first = deferred.pop(0) if deferred else self.queue.get()
                if first is None:
                    return
                joining = [first] + self._take(first.model, self.max_batch - 1, deferred, wait=self.batch_wait)
            else:
                joining = self._take(batch.model_name, self.max_batch - len(batch.rows), deferred, wait=0.0)
            joining = self._drop_cancelled(joining)
            try:
                if joining:
                    batch = self._admit(batch, joining)
                if batch is not None:
                    done = batch.step()
                    self._release(done)
                    if not batch.rows:
                        batch = None
            except Exception as exc:  # a failed batch must not kill the server: tell its requests
                failed = (batch.jobs() if batch else []) + [j for j in joining if batch is None or j not in batch.jobs()]
                for j in failed:
                    j.emit("error", f"{type(exc).__name__}: {exc}")
                self._release(failed)
                batch = None

    def _take(self, model: str, room: int, deferred: list[Job], wait: float) -> list[Job]:
        """Up to ``room`` waiting jobs for ``model``; others are kept for later, in order."""
        out: list[Job] = []
        keep: list[Job] = []
        for j in deferred:
            (out if j.model == model and len(out) < room else keep).append(j)
        deferred[:] = keep
        deadline = time.time() + wait
        while len(out) < room:
            try:
                remaining = deadline - time.time()
                job = self.queue.get(timeout=remaining) if remaining > 0 else self.queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._stop.set()
                break
            (out if job.model == model else deferred).append(job)
        return out

    def _drop_cancelled(self, jobs: list[Job]) -> list[Job]:
        gone = [j for j in jobs if j.cancelled.is_set()]
        for j in gone:
            j.emit("done", "cancelled", 0)
        self._release(gone)
        return [j for j in jobs if not j.cancelled.is_set()]

    def _release(self, jobs: list[Job]) -> None:
        with self._lock:
            self.pending -= len(jobs)

    def _admit(self, batch: "_Batch | None", jobs: list[Job]) -> "_Batch":
        peft, adapter = self._model_for(jobs[0].model)
        model = peft if peft is not None else self.model
        new = _Batch(self, model, jobs[0].model, base_only=peft is not None and adapter is None)
        new.prefill(jobs)
        if batch is None:
            return new
        batch.merge(new)
        return batch

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


@dataclass
class _Row:
    job: Job
    gen: object  # torch.Generator
    tokens: list[int] = field(default_factory=list)
    sent: int = 0


class _Batch:
    """Rows decoding together (a :class:`DecodeBatch`), one request per row."""

    def __init__(self, engine: Engine, model, model_name: str, base_only: bool) -> None:
        from tunelab.inference.generate import DecodeBatch, stop_ids

        self.engine, self.model_name = engine, model_name
        self.rows: list[_Row] = []
        self.eos = stop_ids(model, engine.tokenizer)
        self.decode = DecodeBatch(model, engine.tokenizer.pad_token_id,
                                  forward_ctx=model.disable_adapter if base_only else None)

    def jobs(self) -> list[Job]:
        return [r.job for r in self.rows]

    def prefill(self, jobs: list[Job]) -> None:
        import torch

        self.decode.prefill([j.prompt_ids for j in jobs])
        seed = lambda j: j.seed if j.seed is not None else int.from_bytes(uuid.uuid4().bytes[:4], "little")  # noqa: E731
        self.rows = [_Row(j, torch.Generator().manual_seed(seed(j))) for j in jobs]

    def merge(self, other: "_Batch") -> None:
        self.decode.merge(other.decode)
        self.rows += other.rows

    def step(self) -> list[Job]:
        """Sample one token for every row, stream it, drop finished rows, run the next forward.
        Returns the jobs that finished."""
        import torch

        from tunelab.inference.generate import pick

        tok = self.engine.tokenizer
        nxt = torch.full((len(self.rows),), tok.pad_token_id, dtype=torch.long)
        finished: list[int] = []
        for r, row in enumerate(self.rows):
            j = row.job
            if j.cancelled.is_set():
                j.emit("done", "cancelled", len(row.tokens))
                finished.append(r)
                continue
            t = int(pick(self.decode.logits[r:r + 1], j.temperature, j.top_p, row.gen)[0])
            nxt[r] = t
            if t in self.eos:
                self._finish(row, "stop")
                finished.append(r)
                continue
            row.tokens.append(t)
            text = tok.decode(row.tokens, skip_special_tokens=True)
            cut = _stop_at(text, j.stops)
            if cut is not None:
                self._finish(row, "stop", text[:cut])
                finished.append(r)
                continue
            if len(row.tokens) >= j.max_new_tokens:
                self._finish(row, "length", text)
                finished.append(r)
                continue
            safe = len(text) - max((len(s) - 1 for s in j.stops), default=0)
            if text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
                safe = min(safe, len(text) - 1)
            if safe > row.sent:
                j.emit("delta", text[row.sent:safe])
                row.sent = safe
        done = [self.rows[r].job for r in finished]
        if finished:
            keep = [r for r in range(len(self.rows)) if r not in set(finished)]
            self.rows = [self.rows[r] for r in keep]
            if not self.rows:
                return done
            self.decode.keep(keep)
            nxt = nxt[keep]
        self.decode.advance(nxt)
        return done

    def _finish(self, row: _Row, reason: str, text: str | None = None) -> None:
        if text is None:
            text = self.engine.tokenizer.decode(row.tokens, skip_special_tokens=True)
        if len(text) > row.sent:
            row.job.emit("delta", text[row.sent:])
            row.sent = len(text)
        row.job.emit("done", reason, len(row.tokens))


def _stop_at(text: str, stops: list[str]) -> int | None:
    hits = [text.find(s) for s in stops if s and s in text]
    return min(hits) if hits else None
