"""The files and fine-tuning jobs routes over HTTP, with a fake runner standing in for
training: shapes, errors with their param, validation, cancel in every state, tenants."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import write_jsonl
from tests.jobs.conftest import ALICE, BOB, auth, create_job, jobs_server, memo_file, upload, wait_for, worker_thread


def fake_runner(job, handle):
    """Succeeds at once, or (metadata hold=yes) runs until told to stop."""
    from tunelab.jobs import spec
    from tunelab.jobs.runner import Outcome

    if (job.request.get("metadata") or {}).get("hold") == "yes":
        handle.event("holding")
        while not handle.should_stop():
            time.sleep(0.05)
        return Outcome("stopped")
    return Outcome("succeeded", {"fine_tuned_model": spec.model_name(job), "trained_tokens": 7, "result_files": []})


@pytest.fixture
def server(jobs_engine, store):
    with jobs_server(jobs_engine, store, max_upload_bytes=64 << 10) as url:
        yield url


def _job(url: str, key: str, job_id: str) -> dict:
    return httpx.get(f"{url}/v1/fine_tuning/jobs/{job_id}", headers=auth(key)).json()


def _status(url, key, job_id, wanted):
    return wait_for(lambda: _job(url, key, job_id), lambda j: j["status"] in wanted, f"{job_id} to be {wanted}")


def test_file_lifecycle_and_another_tenant_sees_nothing(server, tmp_path):
    path = memo_file(tmp_path)
    f = upload(server, ALICE, path)
    assert f["object"] == "file" and f["id"].startswith("file-") and f["bytes"] == path.stat().st_size
    assert f["filename"] == "memo.jsonl" and f["purpose"] == "fine-tune"
    assert httpx.get(f"{server}/v1/files/{f['id']}", headers=auth(ALICE)).json() == f
    assert [x["id"] for x in httpx.get(f"{server}/v1/files", headers=auth(ALICE)).json()["data"]] == [f["id"]]
    assert httpx.get(f"{server}/v1/files/{f['id']}/content", headers=auth(ALICE)).content == path.read_bytes()
    assert httpx.get(f"{server}/v1/files", headers=auth(BOB)).json()["data"] == []
    for method, suffix in (("GET", ""), ("GET", "/content"), ("DELETE", "")):
        r = httpx.request(method, f"{server}/v1/files/{f['id']}{suffix}", headers=auth(BOB))
        assert r.status_code == 404 and r.json()["error"]["param"] == "id"
    gone = httpx.delete(f"{server}/v1/files/{f['id']}", headers=auth(ALICE)).json()
    assert gone == {"id": f["id"], "object": "file", "deleted": True}
    assert httpx.get(f"{server}/v1/files/{f['id']}", headers=auth(ALICE)).status_code == 404


def test_an_upload_over_the_cap_is_413_and_leaves_nothing_on_disk(server, store, tmp_path):
    from tunelab.jobs.runner import files_dir

    big = write_jsonl(tmp_path / "big.jsonl", [{"instruction": "x" * 1000, "output": "y"}] * 80)  # ~80 KB > 64 KB
    with big.open("rb") as handle:
        r = httpx.post(f"{server}/v1/files", headers=auth(ALICE), files={"file": ("big.jsonl", handle)},
                       data={"purpose": "fine-tune"}, timeout=60)
    assert r.status_code == 413
    assert r.json()["error"]["param"] == "file" and r.json()["error"]["code"] == "file_too_large"
    assert list(files_dir(store).glob("*")) == []  # the partial upload was removed
    assert httpx.get(f"{server}/v1/files", headers=auth(ALICE)).json()["data"] == []


def test_upload_errors_name_their_param(server, tmp_path):
    path = memo_file(tmp_path)
    with path.open("rb") as handle:
        r = httpx.post(f"{server}/v1/files", headers=auth(ALICE), files={"file": ("m.jsonl", handle)},
                       data={"purpose": "assistants"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "purpose"
    r = httpx.post(f"{server}/v1/files", headers=auth(ALICE), json={"purpose": "fine-tune"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "file"
    r = httpx.post(f"{server}/v1/files", headers=auth(ALICE), data={"purpose": "fine-tune"}, files={"x": ("a", b"b")})
    assert r.status_code == 400 and r.json()["error"]["code"] == "missing_required_parameter"


def test_a_bad_line_fails_the_job_in_validating_files_naming_the_line(server, tiny_model, tmp_path):
    rows = [{"instruction": "a?", "output": "b"}, {"instruction": "c?", "output": "d"}, '{"instruction": "e?", "output"']
    f = upload(server, ALICE, write_jsonl(tmp_path / "bad.jsonl", rows))  # stored, although it has a bad line
    job = create_job(server, ALICE, tiny_model, f["id"])
    assert job["status"] == "validating_files" and job["object"] == "fine_tuning.job"
    failed = _status(server, ALICE, job["id"], ("failed",))
    assert failed["error"]["param"] == "training_file" and "line 3" in failed["error"]["message"]
    assert f["id"] in failed["error"]["message"] and failed["fine_tuned_model"] is None


def test_a_dpo_job_on_a_chat_file_fails_validation_saying_what_it_needs(server, tiny_model, tmp_path):
    f = upload(server, ALICE, memo_file(tmp_path))
    job = create_job(server, ALICE, tiny_model, f["id"], method={"type": "dpo"})
    failed = _status(server, ALICE, job["id"], ("failed",))
    assert "preference pairs" in failed["error"]["message"]


@pytest.mark.parametrize("body, param", [
    ({"model": "gpt-4o-mini"}, "model"),
    ({"training_file": "file-nope"}, "training_file"),
    ({"method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 0}}}},
     "method.supervised.hyperparameters.n_epochs"),
    ({"method": {"type": "reinforcement"}}, "method.type"),
    ({"suffix": "has spaces"}, "suffix"),
    ({"surprise": 1}, "surprise"),
])
def test_bad_job_requests_are_400_with_their_param(server, tiny_model, tmp_path, body, param):
    f = upload(server, ALICE, memo_file(tmp_path))
    r = httpx.post(f"{server}/v1/fine_tuning/jobs", headers=auth(ALICE),
                   json={"model": tiny_model, "training_file": f["id"], **body})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_cancel_in_every_state(server, store, tiny_model, tmp_path):
    f = upload(server, ALICE, memo_file(tmp_path))

    def cancel(job_id, key=ALICE):
        return httpx.post(f"{server}/v1/fine_tuning/jobs/{job_id}/cancel", headers=auth(key))

    validating = store.create_job("alice", {"model": tiny_model, "training_file": f["id"]})  # no validator ran yet
    assert cancel(validating.id).json()["status"] == "cancelled"
    queued = create_job(server, ALICE, tiny_model, f["id"])
    _status(server, ALICE, queued["id"], ("queued",))
    assert cancel(queued["id"]).json()["status"] == "cancelled"
    assert cancel(queued["id"]).json()["status"] == "cancelled"  # again: the same answer
    with worker_thread(store.path, fake_runner, lease_s=3):
        running = create_job(server, ALICE, tiny_model, f["id"], metadata={"hold": "yes"})
        _status(server, ALICE, running["id"], ("running",))
        assert cancel(running["id"]).json()["status"] == "cancelled"
        wait_for(lambda: [e["message"] for e in store.events(running["id"], None, 5).items],
                 lambda m: "The job was cancelled" in m, "the worker to stop the job")
        done = create_job(server, ALICE, tiny_model, f["id"])  # the worker is free again
        _status(server, ALICE, done["id"], ("succeeded",))
    r = cancel(done["id"])
    assert r.status_code == 400 and r.json()["error"]["code"] == "job_already_finished"
    assert _job(server, ALICE, done["id"])["status"] == "succeeded"
    assert _job(server, ALICE, validating.id)["status"] == "cancelled"  # never validated after its cancel


def test_tenants_see_only_their_own_jobs_and_models(server, store, tiny_model, tmp_path):
    f = upload(server, ALICE, memo_file(tmp_path))
    r = httpx.post(f"{server}/v1/fine_tuning/jobs", headers=auth(BOB), json={"model": tiny_model,
                                                                            "training_file": f["id"]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "training_file"  # bob cannot train on it
    with worker_thread(store.path, fake_runner):
        job = create_job(server, ALICE, tiny_model, f["id"], suffix="mine")
        done = _status(server, ALICE, job["id"], ("succeeded",))
    model = done["fine_tuned_model"]
    assert model == f"ft:{tiny_model}:mine:{job['id']}"
    for path in ("", "/events", "/checkpoints"):
        assert httpx.get(f"{server}/v1/fine_tuning/jobs/{job['id']}{path}", headers=auth(BOB)).status_code == 404
    assert httpx.post(f"{server}/v1/fine_tuning/jobs/{job['id']}/cancel", headers=auth(BOB)).status_code == 404
    assert httpx.get(f"{server}/v1/fine_tuning/jobs", headers=auth(BOB)).json()["data"] == []
    alice_models = [m["id"] for m in httpx.get(f"{server}/v1/models", headers=auth(ALICE)).json()["data"]]
    bob_models = [m["id"] for m in httpx.get(f"{server}/v1/models", headers=auth(BOB)).json()["data"]]
    assert model in alice_models and model not in bob_models and tiny_model in bob_models
    r = httpx.post(f"{server}/v1/chat/completions", headers=auth(BOB),
                   json={"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
    assert r.status_code == 404 and r.json()["error"]["param"] == "model"


def test_lists_and_events_page_newest_first(server, store, tiny_model, tmp_path):
    f = upload(server, ALICE, memo_file(tmp_path))
    ids = [create_job(server, ALICE, tiny_model, f["id"])["id"] for _ in range(3)]
    page = httpx.get(f"{server}/v1/fine_tuning/jobs", headers=auth(ALICE), params={"limit": 2}).json()
    assert page["object"] == "list" and [j["id"] for j in page["data"]] == ids[::-1][:2] and page["has_more"]
    rest = httpx.get(f"{server}/v1/fine_tuning/jobs", headers=auth(ALICE),
                     params={"limit": 2, "after": page["data"][-1]["id"]}).json()
    assert [j["id"] for j in rest["data"]] == [ids[0]] and not rest["has_more"]
    for n in range(5):
        store.add_event(ids[0], f"event {n}")
    events = httpx.get(f"{server}/v1/fine_tuning/jobs/{ids[0]}/events", headers=auth(ALICE),
                       params={"limit": 2}).json()
    assert [e["message"] for e in events["data"]] == ["event 4", "event 3"] and events["has_more"]
    assert events["data"][0]["object"] == "fine_tuning.job.event"
    r = httpx.get(f"{server}/v1/fine_tuning/jobs", headers=auth(ALICE), params={"limit": 0})
    assert r.status_code == 400 and r.json()["error"]["param"] == "limit"
