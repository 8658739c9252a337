"""The HTTP edge, as one ASGI middleware in front of the routes: API keys on every route but
``/health`` (the docs and the schema included, and unknown paths, so nothing is probed without
a key), a cap on requests handled at once, and a body limit counted on the bytes actually
received (a ``Content-Length`` can be absent, with chunked encoding, or false).

Written as plain ASGI rather than Starlette's ``BaseHTTPMiddleware`` because that one buffers
and re-wraps the request stream, which hides a client's disconnect from the routes."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from tunelab.serve.auth import ApiKeys
from tunelab.serve.limits import Limits

OPEN_PATHS = {"/health"}
UPLOAD_PATH = "/v1/files"  # file uploads: limited by max_upload_bytes (the route caps the file itself)
FORM_OVERHEAD = 64 << 10  # the multipart framing and fields around an uploaded file


def error_body(message: str, type: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


class ApiError(Exception):
    """An answer in OpenAI's error shape."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return JSONResponse(error_body(self.message, self.type, self.param, self.code), status_code=self.status,
                            headers=self.headers)


def too_large(limit: int) -> ApiError:
    # The connection is not closed at once: a client still sending would get a reset that can
    # destroy this answer before it reads it. The rest of its body is read and dropped (never
    # kept) until it ends or the connection's read timeout closes it.
    return ApiError(413, f"request body over the server's limit of {limit} bytes", code="request_too_large")


class EdgeMiddleware:
    def __init__(self, app, keys: ApiKeys, limits: Limits) -> None:
        self.app, self.keys, self.limits = app, keys, limits
        self.in_flight = 0

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal.response()(scope, receive, send)
            return
        counted = scope["path"] not in OPEN_PATHS
        self.in_flight += counted
        try:
            await self.app(scope, self._counting(receive, scope), send)
        finally:
            self.in_flight -= counted

    def _refusal(self, scope) -> ApiError | None:
        """Why this request is answered before reaching a route (None: it goes on)."""
        headers = dict(scope["headers"])
        if scope["path"] in OPEN_PATHS:
            return None
        if self.keys:
            name = self.keys.match(headers.get(b"authorization", b"").decode("latin-1"))
            if name is None:
                return ApiError(401, "invalid or missing API key (send 'Authorization: Bearer KEY')",
                                type="authentication_error", code="invalid_api_key")
            scope.setdefault("state", {})["api_key_name"] = name
        if self.in_flight >= self.limits.max_concurrent:
            return ApiError(429, "server busy: too many requests in flight, retry shortly", type="rate_limit_error",
                            code="too_many_requests", headers={"Retry-After": "1"})
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self._body_limit(scope):
            return too_large(self._body_limit(scope))
        return None

    def _body_limit(self, scope) -> int:
        if scope["path"] == UPLOAD_PATH and scope["method"] == "POST":
            return self.limits.max_upload_bytes + FORM_OVERHEAD
        return self.limits.max_body_bytes

    def _counting(self, receive, scope):
        limit, seen = self._body_limit(scope), 0

        async def counted_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # raised inside the route's body read, so the app's handler answers it (413)
                    err = too_large(limit)
                    raise HTTPException(413, err.message, headers=err.headers)
            return message

        return counted_receive
