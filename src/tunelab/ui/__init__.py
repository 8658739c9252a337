"""The dashboard at /ui: one HTML page, its script and stylesheet (ui/static/, shipped as
package data, no build step, no library) and JSON endpoints under /ui/api/ (ui/routes.py).

The page and its static files hold no data, so they load without a key: a browser cannot add
an ``Authorization`` header to a page it navigates to. The page asks for the key once, keeps it
in sessionStorage and sends it as a bearer header on every call it makes; everything with
data behind it (/ui/api/, /v1/) stays behind the server's keys."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.responses import FileResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
PAGE = "/ui"
STATIC_PREFIX = "/ui/static/"
# the page must not be framed by another site, nor fetch from anywhere but this server
HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}
DEFAULT_RUNS_DIR = Path("runs")


def mount(app, *, runs_dir: str | Path | None, engine, store) -> None:
    """Add the dashboard's JSON routes to ``app`` (a FastAPI app whose middleware checks keys)
    and the open page in front of it; ``runs_dir`` (default ./runs) is the folder it lists."""
    from tunelab.ui.routes import router

    def jobs_api() -> bool:
        """Whether some route answers GET /v1/fine_tuning/jobs (asked of the routes themselves:
        an included router has no path of its own to compare)."""
        from starlette.routing import Match

        scope = {"type": "http", "path": "/v1/fine_tuning/jobs", "method": "GET", "root_path": ""}
        return any(r.matches(scope)[0] == Match.FULL for r in app.routes)

    app.include_router(router(Path(runs_dir) if runs_dir else DEFAULT_RUNS_DIR, engine, store, jobs_api),
                       include_in_schema=False)
    app.add_middleware(OpenPage)  # added last, so outermost: it answers before the key check


async def _index(_request):
    return FileResponse(STATIC / "index.html")


class OpenPage:
    """ASGI middleware that answers GET /ui and /ui/static/* itself and passes every other
    request on (to the key check and the routes)."""

    def __init__(self, app) -> None:
        self.app = app
        self.pages = Starlette(routes=[Route(PAGE, _index), Route(PAGE + "/", _index),
                                       Mount(STATIC_PREFIX.rstrip("/"), StaticFiles(directory=STATIC))])

    async def __call__(self, scope, receive, send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if scope["type"] == "http" and scope.get("method") in ("GET", "HEAD") and (
                path in (PAGE, PAGE + "/") or path.startswith(STATIC_PREFIX)):
            await self.pages(scope, receive, self._with_headers(send))
            return
        await self.app(scope, receive, send)

    @staticmethod
    def _with_headers(send):
        async def sending(message):
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k.lower().encode(), v.encode()) for k, v in HEADERS.items() if k.lower().encode() not in names]
                message = {**message, "headers": list(message.get("headers", [])) + extra}
            return await send(message)

        return sending
