"""The dashboard's JSON endpoints: every one behind the key, and the shapes the page reads."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.serve.conftest import AUTH

ENDPOINTS = [("GET", "/ui/api/overview"), ("GET", "/ui/api/runs"), ("GET", "/ui/api/runs/memo"),
             ("GET", "/ui/api/runs/memo/metrics"), ("POST", "/ui/api/data/check?filename=a.jsonl")]


@pytest.mark.parametrize("method,path", ENDPOINTS)
@pytest.mark.parametrize("auth", [None, {"Authorization": "Bearer wrong-key-0000"}])
def test_every_endpoint_needs_the_key(server, method, path, auth):
    url, _ = server
    response = httpx.request(method, url + path, headers=auth, content=b'{"prompt": "a", "completion": "b"}\n')
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"
    assert "memo" not in response.text


def test_the_page_and_its_files_load_without_a_key_and_hold_no_data(server):
    url, _ = server
    page = httpx.get(url + "/ui")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/ui/static/app.js", "/ui/static/style.css"):
        assert httpx.get(url + asset).status_code == 200
    assert "memo" not in page.text  # run names come from /ui/api, behind the key
    assert httpx.get(url + "/ui/static/../api/runs").status_code in (401, 404)


def test_overview_names_the_served_models(server, tiny_model):
    url, _ = server
    body = httpx.get(url + "/ui/api/overview", headers=AUTH).json()
    assert body["base_model"] == tiny_model
    assert any(m.endswith(":memo") for m in body["models"])
    assert body["feedback"] is True and body["feedback_exportable"] is True


def test_runs_list_has_a_row_per_run(server, tiny_model):
    url, _ = server
    body = httpx.get(url + "/ui/api/runs", headers=AUTH).json()
    row = next(r for r in body["data"] if r["name"] == "memo")
    assert row["status"] == "succeeded"
    assert (row["stage"], row["method"], row["base"]) == ("sft", "lora", tiny_model)
    assert row["evaluated"] is True and "rougeL" in row["metrics"]
    assert isinstance(row["best_val_loss"], float) and row["steps"] > 0 and row["age_seconds"] >= 0


def test_run_page_has_curves_evaluation_and_data_card(server):
    url, _ = server
    run = httpx.get(url + "/ui/api/runs/memo", headers=AUTH).json()
    assert [m for m in run["metrics_rows"] if "loss" in m] and [m for m in run["metrics_rows"] if "eval_loss" in m]
    assert set(run["eval"]) >= {"base", "tuned", "overfitting", "samples"}
    titles = [s["title"] for s in run["report"]]
    assert "Base vs tuned" in titles
    assert run["data_card"]["splits"]["train"]["rows"] == 8


@pytest.mark.parametrize("name", ["nope", "..", "memo%2F..%2F.."])
def test_unknown_run_is_a_404(server, name):
    url, _ = server
    response = httpx.get(url + f"/ui/api/runs/{name}", headers=AUTH)
    assert response.status_code == 404
    assert response.json()["error"]["param"] in ("name", None)


def test_finished_run_streams_its_rows_then_ends(server):
    url, _ = server
    with httpx.stream("GET", url + "/ui/api/runs/memo/metrics?after=2", headers=AUTH, timeout=30) as response:
        text = "".join(response.iter_text())
    blocks = [b for b in text.split("\n\n") if b.strip()]
    first = json.loads(blocks[0].removeprefix("data: "))
    assert first["status"] == "succeeded" and first["rows"][0]["step"] >= 1
    assert blocks[-1].startswith("event: end")


def test_data_check_reports_a_bad_line_and_duplicates(server):
    url, _ = server
    rows = [json.dumps({"prompt": f"Question {i}?", "completion": f"Answer {i}."}) for i in range(6)]
    rows[3] = '{"prompt": "broken'
    rows.append(rows[0])
    body = ("\n".join(rows) + "\n").encode()
    report = httpx.post(url + "/ui/api/data/check?filename=upload.jsonl&max_length=8", content=body, headers=AUTH,
                        timeout=60).json()
    assert report["path"] == "upload.jsonl"
    assert [(e["line"], e["kind"]) for e in report["errors"]] == [(4, "invalid_json")]
    assert any(f["kind"] == "duplicate" and f["lines"] == [1, 7] for f in report["findings"])
    assert sum(report["histogram"]["counts"]) == report["rows"] == 6
    assert report["guidance"]["verdict"]


def test_data_check_of_a_csv_counts_its_rows(server):
    url, _ = server
    csv = 'instruction,output\n"Say hi","hi"\n"Multi\nline question","answer"\n"Email me","at bob@example.com"\n'
    report = httpx.post(url + "/ui/api/data/check?filename=set.csv", content=csv.encode(), headers=AUTH,
                        timeout=60).json()
    assert report["rows"] == 3 and report["path"] == "set.csv"
    assert any(f["kind"] == "pii_email" and f["lines"] == [4] for f in report["findings"])  # header is row 1


@pytest.mark.parametrize("body,name,why", [(b"", "a.jsonl", "empty")])
def test_data_check_of_an_unusable_file_is_a_400(server, body, name, why):
    url, _ = server
    response = httpx.post(url + f"/ui/api/data/check?filename={name}", content=body, headers=AUTH)
    assert response.status_code == 400
    assert why in response.json()["error"]["message"] and response.json()["error"]["param"] == "file"


def test_tunelab_serve_shows_the_runs_dir_it_is_given(tiny_model, runs_dir, tmp_path):
    from tests.serve.conftest import process_server

    with process_server(tiny_model, tmp_path, "--runs-dir", str(runs_dir)) as proc:
        body = httpx.get(proc.url + "/ui/api/runs", headers=AUTH, timeout=30).json()
        assert body["runs_dir"] == str(runs_dir) and "memo" in [r["name"] for r in body["data"]]
        assert httpx.get(proc.url + "/ui", timeout=30).status_code == 200
        overview = httpx.get(proc.url + "/ui/api/overview", headers=AUTH, timeout=30).json()
        assert overview["jobs_api"] is True  # every server runs the jobs API: the new-job form is on


def test_a_damaged_run_is_listed_with_what_it_has(server, runs_dir):
    import shutil

    broken = runs_dir / "damaged"
    broken.mkdir()
    try:
        shutil.copy(runs_dir / "memo" / "config.yaml", broken / "config.yaml")
        (broken / "run.json").write_text("{torn")
        (broken / "eval.json").write_text("[1, 2]")
        (broken / "metrics.jsonl").write_text('{"step": 1, "loss": 2.5}\n{"step": 2, "lo')
        url, _ = server
        rows = httpx.get(url + "/ui/api/runs", headers=AUTH).json()["data"]
        row = next(r for r in rows if r["name"] == "damaged")
        assert row["train_loss"] == 2.5 and row["evaluated"] is False
        run = httpx.get(url + "/ui/api/runs/damaged", headers=AUTH)
        assert run.status_code == 200 and run.json()["eval"] is None and run.json()["summary"] == {}
    finally:
        shutil.rmtree(broken)


def test_a_bad_query_value_names_its_param_without_the_query_prefix(server):
    url, _ = server
    response = httpx.get(url + "/ui/api/runs/memo/metrics?after=soon", headers=AUTH)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "after"
