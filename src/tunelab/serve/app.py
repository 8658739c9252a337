"""The FastAPI application: OpenAI-compatible routes over an Engine, with auth, limits,
OpenAI-shaped errors, Prometheus metrics, a request log and feedback."""

from __future__ import annotations

import asyncio
import json
import time

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from tunelab.data.tokens import encode_prompt
from tunelab.serve.engine import Engine, Job, QueueFull
from tunelab.serve.schemas import ChatRequest, CompletionRequest, FeedbackRequest
from tunelab.serve.store import Store

MAX_BODY = 1 << 20  # 1 MiB


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict | None = None) -> None:
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}


def error_body(message: str, type: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("tunelab_requests", "Requests by model and status", ["model", "status"],
                                registry=self.registry)
        self.latency = Histogram("tunelab_request_latency_seconds", "Request latency", ["model"],
                                 registry=self.registry)
        self.ttft = Histogram("tunelab_time_to_first_token_seconds", "Time to first token", ["model"],
                              registry=self.registry)
        self.tokens = Counter("tunelab_generated_tokens", "Generated tokens", ["model"], registry=self.registry)
        self.queue = Gauge("tunelab_queue_depth", "Requests waiting or running", registry=self.registry)


def create_app(engine: Engine, *, api_key: str | None = None, store: Store | None = None) -> FastAPI:
    app = FastAPI(title="tunelab", version="0.1.0")
    metrics = Metrics()
    metrics.queue.set_function(lambda: engine.pending)
    app.state.engine, app.state.store, app.state.metrics = engine, store, metrics

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > MAX_BODY:
            return JSONResponse(error_body(f"request body over {MAX_BODY} bytes", "invalid_request_error",
                                           code="request_too_large"), status_code=413)
        return await call_next(request)

    @app.exception_handler(ApiError)
    async def api_error(_request, exc: ApiError):
        return JSONResponse(error_body(exc.message, exc.type, exc.param, exc.code), status_code=exc.status,
                            headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request, exc: RequestValidationError):
        err = exc.errors()[0]
        param = ".".join(str(p) for p in err["loc"] if p != "body") or None
        kind = "invalid_json" if err.get("type") == "json_invalid" else "invalid_value"
        return JSONResponse(error_body(f"{param or 'body'}: {err['msg']}", "invalid_request_error", param, kind),
                            status_code=400 if kind == "invalid_json" else 422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request, exc: StarletteHTTPException):
        return JSONResponse(error_body(str(exc.detail), "invalid_request_error"), status_code=exc.status_code)

    def auth(request: Request) -> None:
        if api_key and request.headers.get("authorization", "") != f"Bearer {api_key}":
            raise ApiError(401, "invalid or missing API key (send 'Authorization: Bearer KEY')",
                           type="authentication_error", code="invalid_api_key")

    @app.get("/health")
    async def health():
        return {"status": "ok", "models": engine.model_names()}

    @app.get("/v1/models", dependencies=[Depends(auth)])
    async def list_models():
        now = int(time.time())
        return {"object": "list", "data": [{"id": m, "object": "model", "created": now, "owned_by": "tunelab"}
                                           for m in engine.model_names()]}

    @app.get("/metrics", dependencies=[Depends(auth)])
    async def prometheus():
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/chat/completions", dependencies=[Depends(auth)])
    async def chat(body: ChatRequest, request: Request):
        messages = [m.model_dump() for m in body.messages]
        ids = encode_prompt(engine.tokenizer, messages)
        return await _complete(request, body, ids, chat=True, prompt_text=json.dumps(messages))

    @app.post("/v1/completions", dependencies=[Depends(auth)])
    async def completions(body: CompletionRequest, request: Request):
        ids = engine.tokenizer(body.prompt, add_special_tokens=False)["input_ids"]
        return await _complete(request, body, ids, chat=False, prompt_text=body.prompt)

    @app.post("/v1/feedback", dependencies=[Depends(auth)])
    async def feedback(body: FeedbackRequest):
        if store is None:
            raise ApiError(400, "feedback needs the request log (start the server with a --db)")
        if body.rating is None and body.preferred_output is None:
            raise ApiError(422, "give a rating or a preferred_output", param="rating")
        if not store.has_request(body.request_id):
            raise ApiError(404, f"no request with id '{body.request_id}'", param="request_id", code="not_found")
        store.add_feedback(body.request_id, body.rating, body.preferred_output, body.comment)
        return {"status": "stored", "request_id": body.request_id}

    async def _complete(request: Request, body, ids: list[int], *, chat: bool, prompt_text: str):
        if not engine.knows(body.model):
            metrics.requests.labels(body.model, "404").inc()
            raise ApiError(404, f"model '{body.model}' not found (serving: {', '.join(engine.model_names())})",
                           param="model", code="model_not_found")
        budget = body.budget(engine.default_max_tokens)
        if len(ids) + budget > engine.context:
            raise ApiError(400, f"prompt ({len(ids)} tokens) + max_tokens ({budget}) exceeds the model's context "
                           f"of {engine.context} tokens", param="max_tokens", code="context_length_exceeded")
        job = Job(body.model, ids, budget, body.temperature, body.top_p, body.seed, body.stops(),
                  loop=asyncio.get_running_loop(), events=asyncio.Queue())
        try:
            engine.submit(job)
        except QueueFull:
            metrics.requests.labels(body.model, "429").inc()
            raise ApiError(429, "server busy: too many queued requests, retry shortly", type="rate_limit_error",
                           code="queue_full", headers={"Retry-After": "1"}) from None
        start = time.perf_counter()
        if body.stream:
            return StreamingResponse(_stream(request, job, body, chat, start, len(ids), prompt_text),
                                     media_type="text/event-stream")
        text, reason, n, ttft = "", None, 0, None
        while True:
            event = await job.events.get()
            if event[0] == "delta":
                ttft = ttft if ttft is not None else time.perf_counter() - start
                text += event[1]
            elif event[0] == "error":
                _record(job, body.model, 500, len(ids), n, start, ttft, "error", prompt_text, text)
                raise ApiError(500, f"generation failed: {event[1]}", type="server_error")
            else:
                reason, n = event[1], event[2]
                break
        _record(job, body.model, 200, len(ids), n, start, ttft, reason, prompt_text, text)
        usage = {"prompt_tokens": len(ids), "completion_tokens": n, "total_tokens": len(ids) + n}
        if chat:
            return {"id": job.id, "object": "chat.completion", "created": int(job.created), "model": body.model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": reason, "logprobs": None}], "usage": usage}
        return {"id": job.id, "object": "text_completion", "created": int(job.created), "model": body.model,
                "choices": [{"index": 0, "text": text, "finish_reason": reason, "logprobs": None}], "usage": usage}

    async def _stream(request, job: Job, body, chat: bool, start: float, prompt_tokens: int, prompt_text: str):
        obj = "chat.completion.chunk" if chat else "text_completion"
        text, reason, n, ttft = "", None, 0, None

        def chunk(delta: dict | str, finish=None) -> str:
            choice = ({"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None} if chat
                      else {"index": 0, "text": delta, "finish_reason": finish, "logprobs": None})
            return "data: " + json.dumps({"id": job.id, "object": obj, "created": int(job.created),
                                          "model": body.model, "choices": [choice]}) + "\n\n"

        try:
            if chat:
                yield chunk({"role": "assistant", "content": ""})
            while True:
                try:
                    event = await asyncio.wait_for(job.events.get(), timeout=0.5)
                except asyncio.TimeoutError:
                    if await request.is_disconnected():
                        job.cancelled.set()
                        return
                    continue
                if event[0] == "delta":
                    ttft = ttft if ttft is not None else time.perf_counter() - start
                    text += event[1]
                    yield chunk({"content": event[1]} if chat else event[1])
                elif event[0] == "error":
                    yield "data: " + json.dumps(error_body(f"generation failed: {event[1]}", "server_error")) + "\n\n"
                    return
                else:
                    reason, n = event[1], event[2]
                    break
            yield chunk({} if chat else "", finish=reason)
            if body.include_usage():
                yield "data: " + json.dumps({"id": job.id, "object": obj, "created": int(job.created),
                                             "model": body.model, "choices": [],
                                             "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": n,
                                                       "total_tokens": prompt_tokens + n}}) + "\n\n"
            yield "data: [DONE]\n\n"
        finally:
            if reason is None:  # the client went away mid-stream: stop generating for it
                job.cancelled.set()
            _record(job, body.model, 200 if reason else 499, prompt_tokens, n, start, ttft,
                    reason or "cancelled", prompt_text, text)

    def _record(job, model, status, prompt_tokens, n, start, ttft, reason, prompt_text, answer):
        latency = time.perf_counter() - start
        metrics.requests.labels(model, str(status)).inc()
        metrics.latency.labels(model).observe(latency)
        if ttft is not None:
            metrics.ttft.labels(model).observe(ttft)
        metrics.tokens.labels(model).inc(n)
        if store is not None:
            store.log_request(id=job.id, model=model, status=status, prompt_tokens=prompt_tokens,
                              completion_tokens=n, latency_ms=latency * 1000,
                              ttft_ms=None if ttft is None else ttft * 1000, finish_reason=reason,
                              prompt=prompt_text, answer=answer)

    return app
