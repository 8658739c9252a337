"""`tunelab jobs ...` against a server: the key from the environment, one-line errors."""

from __future__ import annotations

from tests.helpers import run_cli
from tests.jobs.conftest import ALICE, jobs_server, memo_file


def test_submit_list_show_events_cancel(jobs_engine, store, tiny_model, tmp_path, capsys, monkeypatch):
    with jobs_server(jobs_engine, store) as url:
        monkeypatch.setenv("TUNELAB_URL", url)
        monkeypatch.setenv("TUNELAB_API_KEY", ALICE)
        code, out, err = run_cli(capsys, "jobs", "submit", memo_file(tmp_path), "--model", tiny_model,
                                 "--epochs", "2", "--suffix", "cli")
        assert code == 0, err
        job_id = out.split(":")[0]
        assert job_id.startswith("ftjob-") and "validating_files" in out
        job = store.get_job("alice", job_id)
        assert job.request["method"]["supervised"]["hyperparameters"]["n_epochs"] == 2
        code, out, _ = run_cli(capsys, "jobs", "list")
        assert code == 0 and job_id in out
        code, out, _ = run_cli(capsys, "jobs", "events", job_id)
        assert code == 0 and "Validating training file" in out
        code, out, _ = run_cli(capsys, "jobs", "cancel", job_id)
        assert code == 0 and out.strip() == f"{job_id}: cancelled"
        code, out, _ = run_cli(capsys, "jobs", "show", job_id)
        assert code == 0 and "cancelled" in out
        monkeypatch.setenv("TUNELAB_API_KEY", "wrong-key-0123")
        code, _, err = run_cli(capsys, "jobs", "show", job_id)
        assert code == 2 and err.startswith("error: 401: invalid or missing API key") and len(err.splitlines()) == 1
        monkeypatch.setenv("TUNELAB_API_KEY", ALICE)
        code, _, err = run_cli(capsys, "jobs", "show", "ftjob-nope")
        assert code == 2 and "No such fine-tuning job: ftjob-nope" in err


def test_an_unreachable_server_is_one_line(capsys, monkeypatch):
    from tests.serve.conftest import free_port

    monkeypatch.setenv("TUNELAB_URL", f"http://127.0.0.1:{free_port()}")
    code, _, err = run_cli(capsys, "jobs", "list")
    assert code == 1 and "cannot reach the server" in err and len(err.splitlines()) == 1
