"""Real training through the API on the tiny model, driven by the official openai client:
supervised then DPO jobs served at once by the same server, and a SIGKILLed worker whose job
another worker takes over from the last checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.jobs.conftest import ALICE, FINISHED, jobs_server, memo_file, pairs_file, wait_for, worker_thread


@pytest.fixture
def client_server(jobs_engine, store):
    from openai import OpenAI

    with jobs_server(jobs_engine, store) as url:
        yield OpenAI(base_url=f"{url}/v1", api_key=ALICE, max_retries=0), url


def _finished(client, job_id: str):
    return wait_for(lambda: client.fine_tuning.jobs.retrieve(job_id), lambda j: j.status in FINISHED,
                    f"{job_id} to finish", 600)


def _train_and_chat(client, model: str, path, method: dict, suffix: str):
    with path.open("rb") as handle:
        training = client.files.create(file=handle, purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model=model, training_file=training.id, method=method, suffix=suffix)
    assert job.status == "validating_files"
    job = _finished(client, job.id)
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model == f"ft:{model}:{suffix}:{job.id}" and job.trained_tokens > 0
    events = client.fine_tuning.jobs.list_events(job.id, limit=100).data
    assert events[0].message == "The job has successfully completed"  # newest first
    assert any(e.type == "metrics" and "train_loss" in e.data for e in events)
    assert client.fine_tuning.jobs.checkpoints.list(job.id).data
    csv = client.files.content(job.result_files[0]).text
    assert csv.startswith("step,train_loss,valid_loss,learning_rate") and len(csv.splitlines()) > 1
    assert job.fine_tuned_model in [m.id for m in client.models.list().data]
    answer = client.chat.completions.create(model=job.fine_tuned_model, max_tokens=4,
                                            messages=[{"role": "user", "content": "Code word 1?"}])
    assert answer.model == job.fine_tuned_model and answer.choices[0].finish_reason in ("stop", "length")
    return job


def test_openai_client_fine_tunes_supervised_then_dpo_and_chats_with_each(client_server, store, tiny_model, tmp_path):
    client, _ = client_server
    with worker_thread(store.path, lease_s=30):
        _train_and_chat(client, tiny_model, memo_file(tmp_path),
                        {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 4}}},
                        "memo")
        dpo = _train_and_chat(client, tiny_model, pairs_file(tmp_path),
                              {"type": "dpo", "dpo": {"hyperparameters": {"n_epochs": 1, "batch_size": 4,
                                                                         "beta": 0.2}}}, "prefs")
    assert dpo.method.type == "dpo" and dpo.method.dpo.hyperparameters.beta == 0.2


def _worker_process(db, lease: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tunelab", "worker", "--db", str(db), "--lease", str(lease),
                             "--poll", "0.2"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())


def test_a_sigkilled_workers_job_is_taken_over_and_finishes_from_its_checkpoint(client_server, store, tiny_model,
                                                                                 tmp_path):
    import psutil

    from tunelab.jobs.runner import runs_dir

    client, _ = client_server
    with memo_file(tmp_path).open("rb") as handle:
        training = client.files.create(file=handle, purpose="fine-tune")
    hp = {"n_epochs": 12, "batch_size": 1}  # 84 steps, a checkpoint every 21
    job = client.fine_tuning.jobs.create(model=tiny_model, training_file=training.id,
                                         method={"type": "supervised", "supervised": {"hyperparameters": hp}})
    first = _worker_process(store.path, lease=3)
    try:
        wait_for(lambda: store.checkpoints(job.id, None, 1).items, bool, "a first checkpoint", 600)
        trainers = psutil.Process(first.pid).children(recursive=True)
        first.send_signal(signal.SIGKILL)
        first.wait()
    finally:
        if first.poll() is None:
            first.kill()
        first.stderr.close()
    wait_for(lambda: [p for p in trainers if p.is_running() and p.status() != psutil.STATUS_ZOMBIE], lambda alive: not alive,
             "the killed worker's trainer to stop", 30)
    assert client.fine_tuning.jobs.retrieve(job.id).status == "running"  # until its lease expires
    with worker_thread(store.path, lease_s=3):
        done = _finished(client, job.id)
    assert done.status == "succeeded", done.error
    assert store.get_job(None, job.id).attempts == 2
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=1000).data]
    assert any(m.startswith("Resuming from checkpoint-") for m in messages)
    assert [p.name for p in runs_dir(store).iterdir() if p.is_dir()] == [job.id]  # one run, one adapter
    assert (runs_dir(store) / job.id / "adapter" / "adapter_config.json").is_file()
    steps = [c.step_number for c in client.fine_tuning.jobs.checkpoints.list(job.id, limit=100).data]
    assert len(steps) == len(set(steps)) and max(steps) == 84
