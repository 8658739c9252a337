"""The dashboard's JSON endpoints, under /ui/api/. The API keys guard them like every other
route (serve/edge.py); only the page itself and its static files are open (ui/__init__.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from tunelab.errors import DataError, RunError, TunelabError
from tunelab.serve.edge import ApiError
import tunelab.ui.runs as runs_view

POLL_SECONDS = 0.5  # how often a live curve looks at the metrics file
HEARTBEAT_SECONDS = 15.0  # a comment line on a quiet stream, so a closed tab is noticed


def router(runs_dir: Path, engine, store, jobs_api) -> APIRouter:
    """The routes over ``runs_dir`` (the runs the dashboard lists), the serving ``engine`` (its
    base model checks uploads), the request ``store`` (feedback) and whether ``jobs_api``
    (/v1/fine_tuning/jobs) is served, for the new-job page."""
    api = APIRouter(prefix="/ui/api")

    @api.get("/overview")
    async def overview():
        """What the pages need to know about this server."""
        return {"base_model": engine.base_name, "models": engine.model_names(), "runs_dir": str(runs_dir),
                "feedback": store is not None, "feedback_exportable": bool(store is not None and store.log_content),
                "jobs_api": jobs_api()}

    @api.get("/runs")
    async def list_runs():
        rows = await run_in_threadpool(lambda: [runs_view.row(r) for r in runs_view.run_dirs(runs_dir)])
        return {"object": "list", "runs_dir": str(runs_dir), "data": rows}

    @api.get("/runs/{name}")
    async def show_run(name: str):
        return await run_in_threadpool(lambda: runs_view.detail(_run(runs_dir, name)))

    @api.get("/runs/{name}/metrics")
    async def stream_metrics(name: str, after: int = Query(0, ge=0)):
        """Server-sent events: each new batch of metrics.jsonl rows as ``data: {rows, status}``,
        then ``event: end`` once the run has stopped and every row has been sent."""
        run = _run(runs_dir, name)
        return StreamingResponse(_metrics_events(run, after), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @api.post("/data/check")
    async def check_data(request: Request, filename: str = Query(..., min_length=1, max_length=255),
                         max_length: int | None = Query(None, ge=1, le=1_000_000)):
        """``tunelab data check`` on the request's body (the file's bytes), with the token
        histogram; the file is kept only while it is checked."""
        from tunelab.ui.datacheck import check_upload

        body = await request.body()
        try:
            return await run_in_threadpool(check_upload, body, filename, engine.base_name, max_length)
        except DataError as exc:
            raise ApiError(400, str(exc), param="file", code="invalid_file") from None

    return api


def _run(runs_dir: Path, name: str):
    try:
        return runs_view.find_run(runs_dir, name)
    except RunError as exc:
        raise ApiError(404, str(exc), param="name", code="not_found") from None
    except TunelabError as exc:
        raise ApiError(400, str(exc), param="name") from None


async def _metrics_events(run, seen: int):
    quiet = 0.0
    while True:
        rows, state = await run_in_threadpool(lambda: (runs_view.metrics_rows(run), runs_view.status(run)))
        if len(rows) < seen:  # a resumed run cut the file back to its checkpoint: start over
            seen = 0
            yield "event: reset\ndata: {}\n\n"
        fresh = rows[seen:]
        if fresh or state != "running":
            seen = len(rows)
            quiet = 0.0
            yield "data: " + json.dumps({"rows": fresh, "status": state}) + "\n\n"
        if state != "running":
            yield "event: end\ndata: " + json.dumps({"status": state}) + "\n\n"
            return
        await asyncio.sleep(POLL_SECONDS)
        quiet += POLL_SECONDS
        if quiet >= HEARTBEAT_SECONDS:
            quiet = 0.0
            yield ": still training\n\n"
