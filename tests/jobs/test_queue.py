"""The durable queue on its own (no model): atomic claims, leases, takeover, retry limit,
cancel, and two workers racing over many jobs with a fast fake runner."""

from __future__ import annotations

import threading
import time

from tests.jobs.conftest import worker_thread, wait_for


def _job(store, tenant: str = "alice", **request):
    job = store.create_job(tenant, {"model": "m", "training_file": "file-x", **request})
    assert store.set_validated(job.id, None)
    return job


def test_two_workers_racing_run_every_job_exactly_once(store):
    from tunelab.jobs.runner import Outcome

    runs: list[tuple[str, str]] = []
    lock = threading.Lock()

    def fake(job, handle):  # quick, and long enough for the other worker to try the same job
        with lock:
            runs.append((job.id, job.worker))
        time.sleep(0.002)
        return Outcome("succeeded", {"fine_tuned_model": f"ft:m::{job.id}", "trained_tokens": 1})

    jobs = [_job(store).id for _ in range(60)]
    with worker_thread(store.path, fake, worker_id="w1", poll_s=0.01), \
            worker_thread(store.path, fake, worker_id="w2", poll_s=0.01):
        wait_for(lambda: len(store.jobs_in("succeeded")), lambda n: n == len(jobs), "every job to finish", 120)
    ran = [job_id for job_id, _ in runs]
    assert sorted(ran) == sorted(jobs)  # each job once: none twice, none missed
    claimed_by = {store.get_job(None, j).worker for j in jobs}
    assert claimed_by <= {"w1", "w2"}
    assert all(store.get_job(None, j).attempts == 1 for j in jobs)


def test_claims_in_parallel_connections_never_share_a_job(store):
    from tunelab.jobs.store import SqliteJobStore

    for _ in range(30):
        _job(store)
    claimed: list[str] = []
    lock = threading.Lock()

    def claimer(name: str) -> None:
        own = SqliteJobStore(store.path)
        while (job := own.claim(name, 60, 3)) is not None:
            with lock:
                claimed.append(job.id)
        own.close()

    threads = [threading.Thread(target=claimer, args=(f"c{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claimed) == 30 and len(set(claimed)) == 30


def test_an_expired_lease_is_taken_over_and_the_old_holder_loses_its_writes(store):
    job = _job(store)
    first = store.claim("dead", lease_s=0.2, max_attempts=3)
    assert first.id == job.id and store.claim("other", 60, 3) is None  # held: nobody else gets it
    time.sleep(0.3)
    taken = store.claim("alive", lease_s=60, max_attempts=3)
    assert taken.id == job.id and taken.attempts == 2
    assert store.renew(job.id, "dead", 60) is None  # the old worker learns it lost the job
    assert not store.finish(job.id, "dead", "succeeded", fine_tuned_model="x")
    assert store.finish(job.id, "alive", "succeeded", fine_tuned_model="ft:m::" + job.id)
    assert store.get_job("alice", job.id).status == "succeeded"


def test_a_job_whose_worker_keeps_dying_fails_at_the_retry_limit(store):
    job = _job(store)
    for _ in range(2):
        assert store.claim("w", lease_s=0.05, max_attempts=2) is not None
        time.sleep(0.1)
    assert store.claim("w", lease_s=60, max_attempts=2) is None
    failed = store.get_job("alice", job.id)
    assert failed.status == "failed" and failed.error["code"] == "worker_lost"
    assert "stopped 2 times" in failed.error["message"]


def test_release_requeues_without_using_up_a_retry(store):
    job = _job(store)
    store.claim("w", 60, 3)
    assert store.release(job.id, "w")
    again = store.claim("v", 60, 3)
    assert again.id == job.id and again.attempts == 1


def test_cancel_is_idempotent_and_leaves_finished_jobs_alone(store):
    queued = _job(store)
    assert store.cancel("alice", queued.id).status == "cancelled"
    assert store.cancel("alice", queued.id).status == "cancelled"
    assert store.cancel("bob", queued.id) is None  # another tenant's job does not exist for bob
    done = _job(store)
    store.claim("w", 60, 3)
    store.finish(done.id, "w", "succeeded", fine_tuned_model="ft:m::" + done.id)
    assert store.cancel("alice", done.id).status == "succeeded"
    assert store.claim("w", 60, 3) is None  # a cancelled job is never claimed


def test_a_cancelled_running_job_tells_its_worker_and_keeps_its_status(store):
    job = _job(store)
    store.claim("w", 60, 3)
    store.cancel("alice", job.id)
    assert store.renew(job.id, "w", 60) == "cancelled"
    assert not store.finish(job.id, "w", "succeeded", fine_tuned_model="x")
    assert store.get_job("alice", job.id).status == "cancelled"


def test_pages_are_newest_first_and_continue_after_an_id(store):
    ids = [_job(store).id for _ in range(5)]
    first = store.list_jobs("alice", None, 2)
    assert [j.id for j in first.items] == ids[::-1][:2] and first.has_more
    rest = store.list_jobs("alice", first.items[-1].id, 10)
    assert [j.id for j in rest.items] == ids[::-1][2:] and not rest.has_more
    assert store.list_jobs("bob", None, 10).items == []


def test_everything_committed_survives_reopening(store):
    from tunelab.jobs.store import SqliteJobStore

    job = _job(store)
    store.add_event(job.id, "hello", data={"step": 1})
    store.add_checkpoint(job.id, 3, "ft:m::x:ckpt-step-3", {"step": 3})
    assert not store.add_checkpoint(job.id, 3, "ft:m::x:ckpt-step-3", {"step": 3})  # once per step
    reopened = SqliteJobStore(store.path)
    assert reopened.get_job("alice", job.id).status == "queued"
    assert [e["message"] for e in reopened.events(job.id, None, 10).items] == ["hello"]
    assert [c["step"] for c in reopened.checkpoints(job.id, None, 10).items] == [3]
    reopened.close()
