"""The generation engine: one base model, adapters loaded on first use (LRU), and a worker
thread that batches requests (continuous batching) and streams tokens back to each of them.

Only the worker thread touches the model, so adapters can be switched and loaded without
locks. Each batch serves one model name (the base or one adapter): a request never runs
with another request's adapter.

One request never fails another: a request that fails while it is admitted (its adapter,
its seed), prefilled or sampled fails alone and the batch goes on. A prefill that fails is
retried in halves until the failing request is alone; a decode step that runs out of memory
keeps the older half of the rows and sends the others back to wait (they are prefilled again
with what they have generated so far, so their answers do not change), and the batch stays
at the size that fitted.
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
from typing import Callable

from tunelab.errors import RunError

GREEDY_BELOW = 1e-5  # temperatures under this are greedy: dividing by them overflows the scores


class QueueFull(Exception):
    pass


class ShuttingDown(Exception):
    pass


@dataclass(eq=False)  # one job is one request: compared and hashed by identity
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
    # ("delta", text) ..., then ("done", finish_reason, completion_tokens) or ("error", message, status, code)
    events: asyncio.Queue | None = None
    on_end: Callable[[], None] | None = None  # set by the engine: called once, at the job's last event
    ended: bool = False
    stopped_by_server: bool = False  # cancelled by a shutdown rather than by its client

    def emit(self, *event) -> None:
        if self.loop is None or self.events is None:
            return
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the caller's event loop is closed: nobody is listening
            pass

    def end(self, *event) -> None:
        if self.ended:
            return
        self.ended = True
        if self.on_end is not None:  # before the event: whoever sees it sees the slot free
            self.on_end()
        self.emit(*event)

    def fail(self, message: str, status: int = 500, code: str = "generation_failed") -> None:
        self.end("error", message, status, code)

    def end_cancelled(self, generated: int) -> None:
        if self.stopped_by_server:
            self.fail("the server is shutting down", 503, "server_shutting_down")
        else:
            self.end("done", "cancelled", generated)


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


def warn_on_other_templates(adapters: dict[str, Adapter], tokenizer) -> None:
    """The server reads every adapter with its base's chat template: one warning line for each
    run trained with another (inference/load.py's guard)."""
    from tunelab.inference.load import check_template
    from tunelab.models.templates import current
    from tunelab.rundir import open_run

    for adapter in adapters.values():
        try:
            run = open_run(adapter.path.parent)
        except RunError:
            continue  # an adapter folder outside a run: nothing records its template
        check_template(run, current(tokenizer), "serve")


def serving_tokenizer(ref, adapters: dict[str, Adapter]):
    """The base's tokenizer. A base model without a chat template takes the one its first adapter
    saved (the template it was trained with), so runs fine-tuned from a base model are servable."""
    from tunelab.errors import ModelError
    from tunelab.inference.load import saved_template
    from tunelab.models.load import ModelRef, load_tokenizer

    try:
        return load_tokenizer(ref)
    except ModelError:
        trained = next((a.path for a in adapters.values() if saved_template(a.path) is not None), None)
        if trained is None:
            raise
        return load_tokenizer(ModelRef(ref.name, str(trained), ref.params_b, True))


class Engine:
    def __init__(self, base: str, adapters: dict[str, Adapter], *, max_batch: int = 8, max_queue: int = 64,
                 cache_size: int = 4, default_max_tokens: int = 256, batch_wait: float = 0.01,
                 dtype: str = "auto", device_map: str | None = None) -> None:
        from tunelab.inference.load import resolve_dtype
        from tunelab.models.load import load_model, resolve

        self.base_name = base
        ref = resolve(base)
        self.tokenizer = serving_tokenizer(ref, adapters)
        warn_on_other_templates(adapters, self.tokenizer)
        self.dtype = resolve_dtype(dtype)  # a bare base model: bf16 where supported
        self.model = load_model(ref, self.dtype, device_map=device_map).eval()  # "auto": over several GPUs
        self.context = int(getattr(self.model.config, "max_position_embeddings", 2048))
        self.adapters = adapters
        self.max_batch, self.max_queue, self.cache_size = max_batch, max_queue, cache_size
        self.default_max_tokens = default_max_tokens
        self.batch_wait = batch_wait
        self.peft = None
        self.loaded: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.queue: queue.Queue[Job | None] = queue.Queue()
        self.pending = 0
        self.draining = False
        self._live: set[Job] = set()  # submitted and not ended
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
            if self.draining or self._stop.is_set():
                raise ShuttingDown()
            if self.pending >= self.max_queue:
                raise QueueFull()
            self.pending += 1
            self._live.add(job)
        job.on_end = lambda: self._release(job)
        self.queue.put(job)

    def drain(self) -> None:
        """Take no more requests and stop the ones in flight (they end with a 503 error)."""
        with self._lock:
            self.draining = True
            live = list(self._live)
        for job in live:
            job.stopped_by_server = True
            job.cancelled.set()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker: requests still waiting or generating end with an error."""
        self._stop.set()
        self.queue.put(None)
        self._worker.join(timeout=timeout)

    def _release(self, job: Job) -> None:
        with self._lock:
            self.pending -= 1
            self._live.discard(job)

    # ------------------------------------------------------------------ worker
    # Continuous batching: between two decode steps, waiting requests for the model that is
    # running are prefilled and join the batch, and finished ones leave it, so a request
    # never waits for a whole batch to end.
    def _run(self) -> None:
        batch: _Batch | None = None
        waiting: collections.deque[_Row] = collections.deque()
        while not self._stop.is_set():
            try:
                self._collect(waiting, block=batch is None and not waiting)
                _drop_cancelled(waiting)  # a client that left frees its place now, not at its turn
                if batch is None and waiting:
                    model, room = waiting[0].job.model, self.max_batch
                elif batch is not None:
                    model, room = batch.model_name, batch.cap - len(batch.rows)
                else:
                    continue
                joining = _pop_for(waiting, model, room)
                if joining:
                    batch = self._admit(batch, model, joining, waiting)
                if batch is not None:
                    batch = self._step(batch, waiting)
            except Exception as exc:  # a bug in this loop: end what it held, keep serving the others
                held = (batch.rows if batch else []) + list(waiting)
                for row in held:
                    row.job.fail(f"generation failed ({type(exc).__name__}: {exc})")
                batch, waiting = None, collections.deque()
        self._shutdown(batch, waiting)

    def _shutdown(self, batch: "_Batch | None", waiting: "collections.deque[_Row]") -> None:
        rows = (batch.rows if batch else []) + list(waiting)
        while True:
            try:
                job = self.queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                rows.append(_Row(job))
        for row in rows:
            row.job.fail("the server is shutting down", 503, "server_shutting_down")

    def _collect(self, waiting: "collections.deque[_Row]", block: bool) -> None:
        """Move submitted jobs into ``waiting`` (rows to admit). With ``block``, wait for one,
        then up to ``batch_wait`` seconds for more, so a burst starts as one batch."""
        deadline = None
        while True:
            try:
                if block and deadline is None:
                    job = self.queue.get()
                    deadline = time.monotonic() + self.batch_wait
                elif deadline is not None and len(waiting) < self.max_batch:
                    job = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
                else:
                    job = self.queue.get_nowait()
            except queue.Empty:
                return
            if job is None:
                self._stop.set()
                return
            row = _Row.admit(job)
            if row is not None:
                waiting.append(row)

    def _admit(self, batch: "_Batch | None", model: str, rows: "list[_Row]",
               waiting: "collections.deque[_Row]") -> "_Batch | None":
        rows = [r for r in rows if not _ended_if_cancelled(r)]
        if not rows:
            return batch
        try:
            runner, base_only = self._model_for(model)
        except Exception as exc:  # the adapter could not be loaded: only its requests fail
            for row in rows:
                row.job.fail(f"could not load '{model}' ({type(exc).__name__}: {exc})")
            return batch
        for new in self._prefill(runner, model, base_only, rows):
            if batch is None:
                batch = new
                continue
            snapshot = _snapshot(batch.decode)
            try:
                batch.merge(new)
            except Exception as exc:
                _restore(batch.decode, snapshot)
                if _is_oom(exc):  # they do not fit beside the running rows: they wait for room
                    _free_memory()
                    batch.cap = len(batch.rows)
                    waiting.extendleft(reversed(new.rows))
                else:
                    _fail_rows(new.rows, exc)
        return batch

    def _prefill(self, runner, model: str, base_only: bool, rows: "list[_Row]") -> "list[_Batch]":
        """Prefill ``rows`` as one batch; if that fails, each half on its own, down to the one
        request that fails alone (a poison prompt, or one too large for memory)."""
        try:
            return [_Batch(self, runner, model, base_only, rows)]
        except Exception as exc:
            if _is_oom(exc):
                _free_memory()
            if len(rows) == 1:
                _fail_rows(rows, exc)
                return []
            half = len(rows) // 2
            return self._prefill(runner, model, base_only, rows[:half]) + \
                self._prefill(runner, model, base_only, rows[half:])

    def _step(self, batch: "_Batch", waiting: "collections.deque[_Row]") -> "_Batch | None":
        """Sample a token for every row and run the next forward, halving the batch (newest
        rows back to ``waiting``) while that forward fails."""
        tokens = batch.sample()
        while batch.rows:
            snapshot = _snapshot(batch.decode)
            try:
                batch.decode.advance(tokens)
                return batch
            except Exception as exc:
                _restore(batch.decode, snapshot)
                if _is_oom(exc):
                    _free_memory()
                if len(batch.rows) == 1:
                    _fail_rows(batch.rows, exc)
                    return None
                keep = len(batch.rows) // 2
                waiting.extendleft(reversed(batch.rows[keep:]))
                batch.keep(list(range(keep)))
                batch.cap = keep
                tokens = tokens[:keep]
        return None

    def _model_for(self, name: str):
        """The model to run for ``name`` with the right adapter active, and whether it must run
        with adapters disabled (the base, once adapters are loaded). Worker thread only."""
        if name == self.base_name:
            return (self.peft, True) if self.peft is not None else (self.model, False)
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
        return self.peft, False


@dataclass
class _Row:
    """One request in a batch: its sampler and the tokens it has so far."""

    job: Job
    gen: object = None  # torch.Generator
    tokens: list[int] = field(default_factory=list)
    sent: int = 0  # characters already streamed

    @classmethod
    def admit(cls, job: Job) -> "_Row | None":
        """A row for ``job``, or None if its sampler cannot be made (it then fails alone)."""
        import torch

        try:
            seed = job.seed if job.seed is not None else int.from_bytes(uuid.uuid4().bytes[:4], "little")
            return cls(job, torch.Generator().manual_seed(seed))
        except (RuntimeError, ValueError, TypeError, OverflowError) as exc:
            job.fail(f"invalid seed ({exc})", 400, "invalid_value")
            return None

    def ids(self) -> list[int]:
        """What to prefill: the prompt and, for a row sent back to wait, what it generated."""
        return self.job.prompt_ids + self.tokens


class _Batch:
    """Rows decoding together (a :class:`DecodeBatch`), one request per row."""

    def __init__(self, engine: Engine, model, model_name: str, base_only: bool, rows: "list[_Row]") -> None:
        from tunelab.inference.generate import DecodeBatch, stop_ids

        self.engine, self.model_name = engine, model_name
        self.cap = engine.max_batch  # rows this batch may hold (lowered when memory runs out)
        self.eos = stop_ids(model, engine.tokenizer)
        self.decode = DecodeBatch(model, engine.tokenizer.pad_token_id,
                                  forward_ctx=model.disable_adapter if base_only else None)
        self.decode.prefill([r.ids() for r in rows])
        self.rows = list(rows)

    def merge(self, other: "_Batch") -> None:
        self.decode.merge(other.decode)
        self.rows += other.rows

    def keep(self, keep: list[int]) -> None:
        self.rows = [self.rows[r] for r in keep]
        self.decode.keep(keep)

    def sample(self):
        """One token for every row; rows that finish or fail leave the batch. Returns the
        tokens of the rows that stay, in their order (to feed with ``advance``)."""
        import torch

        tokens: list[int] = []
        keep: list[int] = []
        for r, row in enumerate(self.rows):
            try:
                t = self._sample_row(r, row)
            except Exception as exc:  # this request's sampling failed: it ends, the others go on
                row.job.fail(f"sampling failed ({type(exc).__name__}: {exc})")
                t = None
            if t is not None:
                keep.append(r)
                tokens.append(t)
        if len(keep) < len(self.rows):
            self.rows = [self.rows[r] for r in keep]
            if self.rows:
                self.decode.keep(keep)
        return torch.tensor(tokens, dtype=torch.long)

    def _sample_row(self, r: int, row: _Row) -> int | None:
        """Sample row ``r``'s next token and stream its text; None when the row is done."""
        j = row.job
        if j.cancelled.is_set():
            j.end_cancelled(len(row.tokens))
            return None
        t = _pick_one(self.decode.logits[r], j.temperature, j.top_p, row.gen)
        if t in self.eos:
            self._finish(row, "stop")
            return None
        row.tokens.append(t)
        tok = self.engine.tokenizer
        text = tok.decode(row.tokens, skip_special_tokens=True)
        cut = _stop_at(text, j.stops)
        if cut is not None:
            self._finish(row, "stop", text[:cut])
            return None
        if len(row.tokens) >= j.max_new_tokens:
            self._finish(row, "length", text)
            return None
        safe = len(text) - max((len(s) - 1 for s in j.stops), default=0)
        if text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
            safe = min(safe, len(text) - 1)
        if safe > row.sent:
            j.emit("delta", text[row.sent:safe])
            row.sent = safe
        return t

    def _finish(self, row: _Row, reason: str, text: str | None = None) -> None:
        if text is None:
            text = self.engine.tokenizer.decode(row.tokens, skip_special_tokens=True)
        if len(text) > row.sent:
            row.job.emit("delta", text[row.sent:])
            row.sent = len(text)
        row.job.end("done", reason, len(row.tokens))


def _pick_one(logits, temperature: float, top_p: float, generator) -> int:
    """One row's next token, guarded: scores that are not finite fail this row alone, and a
    temperature small enough to overflow them is greedy (what it tends to)."""
    import torch

    from tunelab.inference.generate import pick

    if not bool(torch.isfinite(logits).all()):
        raise FloatingPointError("the model's scores for this request are not finite")
    if temperature < GREEDY_BELOW or not bool(torch.isfinite(logits / temperature).all()):
        return int(logits.argmax())
    return int(pick(logits[None], temperature, top_p, generator)[0])


def _pop_for(waiting: "collections.deque[_Row]", model: str, room: int) -> "list[_Row]":
    """Up to ``room`` waiting rows for ``model``; the others keep their order."""
    taken: list[_Row] = []
    kept: list[_Row] = []
    for row in waiting:
        (taken if row.job.model == model and len(taken) < room else kept).append(row)
    waiting.clear()
    waiting.extend(kept)
    return taken


def _drop_cancelled(waiting: "collections.deque[_Row]") -> None:
    if any(row.job.cancelled.is_set() for row in waiting):
        kept = [row for row in waiting if not _ended_if_cancelled(row)]
        waiting.clear()
        waiting.extend(kept)


def _ended_if_cancelled(row: _Row) -> bool:
    if row.job.cancelled.is_set():
        row.job.end_cancelled(len(row.tokens))
        return True
    return False


def _is_oom(exc: BaseException) -> bool:
    import torch

    text = str(exc).lower()
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text


def _free_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _fail_rows(rows: "list[_Row]", exc: BaseException) -> None:
    for row in rows:
        if _is_oom(exc):
            row.job.fail(f"this request does not fit in memory ({len(row.ids())} tokens); retry with a shorter prompt "
                         "or max_tokens, or later", 503, "out_of_memory")
        else:
            row.job.fail(f"generation failed ({type(exc).__name__}: {exc})")


def _snapshot(decode) -> tuple:
    """What a failed forward may have changed in a DecodeBatch (references, no copies: every
    change replaces these tensors rather than writing into them)."""
    layers = [(layer.keys, layer.values) for layer in decode.cache.layers]
    return layers, decode.mask, decode.last_pos, decode.logits


def _restore(decode, snapshot: tuple) -> None:
    layers, decode.mask, decode.last_pos, decode.logits = snapshot
    for layer, (keys, values) in zip(decode.cache.layers, layers):
        layer.keys, layer.values = keys, values


def _stop_at(text: str, stops: list[str]) -> int | None:
    hits = [text.find(s) for s in stops if s and s in text]
    return min(hits) if hits else None
