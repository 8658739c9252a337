"""The HTTP routes of OpenAI's files and fine-tuning jobs API, and what the server asks about
fine-tuned models: which a caller may see and use, and where their adapters are.

Every route runs behind the server's API keys; the key's name is the tenant. A tenant sees
only its own files, jobs and fine-tuned models: another tenant's id is answered like an id
that does not exist (404). Store calls are plain functions, which FastAPI runs on its thread
pool, so the event loop never waits on SQLite.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from tunelab.jobs import files as uploads
from tunelab.jobs import spec
from tunelab.jobs.runner import adapter_path, files_dir
from tunelab.jobs.store import JobStore
from tunelab.jobs.worker import validate_job
from tunelab.serve.edge import ApiError

DEFAULT_TENANT = "default"  # the tenant of an open server (no keys) and of the single --api-key


def tenant(request: Request) -> str:
    return getattr(request.state, "api_key_name", None) or DEFAULT_TENANT


def _not_found(kind: str, ident: str, param: str = "id") -> ApiError:
    shown = ident if len(ident) <= 80 else ident[:77] + "..."
    return ApiError(404, f"No such {kind}: {shown}", param=param, code="not_found")


def _limit(given: str | None, default: int, high: int) -> int:
    """The ``limit`` query parameter: 1..``high``, ``default`` when absent. Checked here rather
    than by FastAPI so the error names ``limit`` as OpenAI's does (not ``query.limit``)."""
    if given is None:
        return default
    if not given.isdigit() or not 1 <= int(given) <= high:
        raise ApiError(400, f"limit: expected a whole number from 1 to {high} (got {given[:20]!r})", param="limit",
                       code="invalid_value")
    return int(given)


def _listing(items: list[dict], has_more: bool) -> dict:
    return {"object": "list", "data": items, "has_more": has_more,
            "first_id": items[0]["id"] if items else None, "last_id": items[-1]["id"] if items else None}


class JobsApi:
    """The routes over ``store``; jobs may fine-tune ``base`` only (None: any model, for a
    store without a server)."""

    def __init__(self, store: JobStore, base: str | None = None,
                 max_upload_bytes: int = uploads.DEFAULT_MAX_UPLOAD) -> None:
        self.store, self.base, self.max_upload_bytes = store, base, max_upload_bytes
        self.router = APIRouter()
        _file_routes(self)
        _job_routes(self)

    # ------------------------------------------------------------------ the server's model names
    def job_of_model(self, name: str):
        """The job whose fine-tuned model is ``name``, whoever owns it (None: not a job's)."""
        if not name.startswith("ft:"):
            return None
        job = self.store.get_job(None, name.rsplit(":", 1)[-1])
        return job if job is not None and job.fine_tuned_model == name else None

    def visible_models(self, names: list[str], who: str) -> list[str]:
        """``names`` without other tenants' fine-tuned models, plus ``who``'s own."""
        shown = [n for n in names if (job := self.job_of_model(n)) is None or job.tenant == who]
        own = [j.fine_tuned_model for j in self.store.jobs_in("succeeded", who)
               if self.base in (None, j.request["model"])]
        return shown + [n for n in own if n not in shown]

    def resolve(self, engine, who: str, name: str) -> None:
        """Make ``who``'s fine-tuned model ``name`` servable by ``engine`` (its adapter is
        registered on first use); another tenant's is a 404, like a name that does not exist."""
        from tunelab.serve.engine import Adapter

        job = self.job_of_model(name)
        if job is None:
            return
        if job.tenant != who or job.status != "succeeded" or job.request["model"] != engine.base_name:
            raise ApiError(404, f"model '{name}' not found", param="model", code="model_not_found")
        if name not in engine.adapters:
            engine.adapters[name] = Adapter(name, adapter_path(self.store, job))

    async def resolve_async(self, engine, request: Request, name: str) -> None:
        if name.startswith("ft:"):
            await asyncio.to_thread(self.resolve, engine, tenant(request), name)


def _file_routes(api: JobsApi) -> None:
    router, store = api.router, api.store

    @router.post("/v1/files")
    async def create_file(request: Request):
        folder = files_dir(store)
        upload = await uploads.receive_upload(request, folder, api.max_upload_bytes)
        if upload.fields.get("purpose") not in uploads.PURPOSES:
            upload.path.unlink(missing_ok=True)
            raise ApiError(400, f"purpose: expected one of {', '.join(uploads.PURPOSES)} (got "
                                f"{upload.fields.get('purpose')!r})", param="purpose", code="invalid_value")
        row = await asyncio.to_thread(uploads.store_upload, upload, folder, tenant(request))
        await asyncio.to_thread(store.add_file, row)
        return uploads.file_object(row)

    @router.get("/v1/files")
    def list_files(request: Request, purpose: str | None = None, after: str | None = None,
                   limit: str | None = None):
        page = store.list_files(tenant(request), purpose, after, _limit(limit, 10000, 10000))
        return _listing([uploads.file_object(r) for r in page.items], page.has_more)

    def owned(request: Request, file_id: str) -> dict:
        row = store.get_file(tenant(request), file_id)
        if row is None:
            raise _not_found("File object", file_id)
        return row

    @router.get("/v1/files/{file_id}")
    def retrieve_file(request: Request, file_id: str):
        return uploads.file_object(owned(request, file_id))

    @router.delete("/v1/files/{file_id}")
    def delete_file(request: Request, file_id: str):
        row = owned(request, file_id)
        store.delete_file(tenant(request), file_id)
        Path(row["path"]).unlink(missing_ok=True)
        return {"id": file_id, "object": "file", "deleted": True}

    @router.get("/v1/files/{file_id}/content")
    def file_content(request: Request, file_id: str):
        row = owned(request, file_id)
        kind = "text/csv" if row["path"].endswith(".csv") else "application/jsonl"
        return FileResponse(row["path"], media_type=kind)


def _job_routes(api: JobsApi) -> None:
    router, store = api.router, api.store

    @router.post("/v1/fine_tuning/jobs")
    async def create_job(request: Request, body: spec.JobRequest):
        who = tenant(request)
        req = body.model_dump(exclude_none=True)
        await asyncio.to_thread(_check_job, api, who, req)
        job = await asyncio.to_thread(store.create_job, who, req)
        await asyncio.to_thread(store.add_event, job.id, f"Validating training file: {req['training_file']}")
        # the answer says validating_files, as OpenAI's does; the check itself is quick and runs next
        asyncio.get_running_loop().run_in_executor(None, validate_job, store, job)
        return spec.job_object(job)

    @router.get("/v1/fine_tuning/jobs")
    def list_jobs(request: Request, after: str | None = None, limit: str | None = None):
        page = store.list_jobs(tenant(request), after, _limit(limit, 20, 100))
        return _listing([spec.job_object(j) for j in page.items], page.has_more)

    def owned(request: Request, job_id: str):
        job = store.get_job(tenant(request), job_id)
        if job is None:
            raise _not_found("fine-tuning job", job_id, "fine_tuning_job_id")
        return job

    @router.get("/v1/fine_tuning/jobs/{job_id}")
    def retrieve_job(request: Request, job_id: str):
        return spec.job_object(owned(request, job_id))

    @router.post("/v1/fine_tuning/jobs/{job_id}/cancel")
    def cancel_job(request: Request, job_id: str):
        job = owned(request, job_id)
        if job.status in ("succeeded", "failed"):
            raise ApiError(400, f"job {job_id} has already {job.status}; only a job that has not finished can be "
                                "cancelled", param="fine_tuning_job_id", code="job_already_finished")
        was = job.status
        job = store.cancel(tenant(request), job_id)
        if was != "cancelled" and job.status == "cancelled":
            store.add_event(job_id, f"Job cancelled (it was {was})")
        return spec.job_object(job)

    @router.get("/v1/fine_tuning/jobs/{job_id}/events")
    def job_events(request: Request, job_id: str, after: str | None = None, limit: str | None = None):
        owned(request, job_id)
        page = store.events(job_id, after, _limit(limit, 20, 1000))
        return _listing([_event(r) for r in page.items], page.has_more)

    @router.get("/v1/fine_tuning/jobs/{job_id}/checkpoints")
    def job_checkpoints(request: Request, job_id: str, after: str | None = None, limit: str | None = None):
        owned(request, job_id)
        page = store.checkpoints(job_id, after, _limit(limit, 10, 100))
        return _listing([_checkpoint(r, job_id) for r in page.items], page.has_more)


def _check_job(api: JobsApi, who: str, req: dict) -> None:
    """400s for a job that cannot start: a model this server does not fine-tune, a file that is
    not the caller's fine-tune file, a hyperparameter out of range."""
    if api.base is not None and req["model"] != api.base:
        raise ApiError(400, f"model '{req['model']}' is not available for fine-tuning on this server (it fine-tunes "
                            f"'{api.base}')", param="model", code="model_not_available")
    for param in ("training_file", "validation_file"):
        if req.get(param):
            row = api.store.get_file(who, req[param])
            if row is None or row["purpose"] != "fine-tune":
                raise ApiError(400, f"{param}: no fine-tune file with id '{req[param]}'", param=param,
                               code="invalid_file")
    if req.get("integrations"):
        raise ApiError(400, "integrations: not supported by this server (send none)", param="integrations",
                       code="invalid_value")
    out_of_range = spec.check_ranges(req)
    if out_of_range:
        raise ApiError(400, out_of_range[1], param=out_of_range[0], code="invalid_value")


def _event(row: dict) -> dict:
    import json

    return {"object": "fine_tuning.job.event", "id": row["id"], "created_at": row["created_at"],
            "level": row["level"], "message": row["message"], "type": row["type"],
            "data": json.loads(row["data"]) if row["data"] else None}


def _checkpoint(row: dict, job_id: str) -> dict:
    import json

    return {"object": "fine_tuning.job.checkpoint", "id": row["id"], "created_at": row["created_at"],
            "fine_tuned_model_checkpoint": row["name"], "step_number": row["step"],
            "metrics": json.loads(row["metrics"] or "{}"), "fine_tuning_job_id": job_id}
