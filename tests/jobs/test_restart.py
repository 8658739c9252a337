"""`tunelab serve --workers 1` stopped (SIGTERM) in the middle of a job and started again: the
job goes back to the queue with its checkpoint, the new server's worker finishes it, and the
client only sees the job take longer."""

from __future__ import annotations

import signal

from tests.jobs.conftest import FINISHED, memo_file, wait_for
from tests.serve.conftest import KEY, process_server


def test_a_server_restart_mid_job_loses_nothing(tiny_model, tmp_path):
    from openai import OpenAI

    from tunelab.jobs.store import SqliteJobStore

    db = tmp_path / "jobs" / "jobs.sqlite"
    flags = ("--workers", "1", "--jobs-db", str(db))
    with process_server(tiny_model, tmp_path, *flags) as server:
        client = OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0)
        with memo_file(tmp_path).open("rb") as handle:
            training = client.files.create(file=handle, purpose="fine-tune")
        hp = {"n_epochs": 8, "batch_size": 1}
        job = client.fine_tuning.jobs.create(model=tiny_model, training_file=training.id, suffix="restart",
                                             method={"type": "supervised", "supervised": {"hyperparameters": hp}})
        store = SqliteJobStore(db)
        wait_for(lambda: store.checkpoints(job.id, None, 1).items, bool, "a first checkpoint", 600)
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=180) == 0
    assert store.get_job(None, job.id).status == "queued"  # given back, not lost
    with process_server(tiny_model, tmp_path, *flags) as server:
        client = OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0)
        done = wait_for(lambda: client.fine_tuning.jobs.retrieve(job.id), lambda j: j.status in FINISHED,
                        "the job to finish after the restart", 600)
        assert done.status == "succeeded", done.error
        answer = client.chat.completions.create(model=done.fine_tuned_model, max_tokens=3,
                                                messages=[{"role": "user", "content": "Code word 2?"}])
        assert answer.model == done.fine_tuned_model
        messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=1000).data]
    assert any("back in the queue" in m for m in messages)
    assert any(m.startswith("Resuming from checkpoint-") for m in messages)
    store.close()
