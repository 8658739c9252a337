"""`tunelab export --push-to-hub`: the real huggingface_hub upload (create_repo, then
upload_folder's preupload and commit calls) against a fake of the Hub's HTTP API on 127.0.0.1.

The fake answers the four endpoints those calls use: /api/repos/create, /api/validate-yaml (the
README's metadata), /api/models/ORG/NAME/preupload/REV and /api/models/ORG/NAME/commit/REV (the
NDJSON commit). It asks for every file to be sent inline ("regular"); the real Hub sends large
and binary files through LFS/Xet storage instead, a transfer path this fake does not cover.
"""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
import yaml
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from tests.conftest import MEMO_ROWS, write_jsonl
from tests.helpers import run_cli
from tests.serve.conftest import thread_server

TOKEN = "hf_fake_write_token_123"


def fake_hub(state: dict):
    """The Hub's repo-creation and commit API, keeping what it was sent in ``state``."""
    app = FastAPI()

    @app.middleware("http")
    async def record(request: Request, call_next):
        state["requests"].append((request.method, str(request.url), request.headers.get("authorization")))
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return JSONResponse({"error": "Invalid credentials"}, status_code=401)
        return await call_next(request)

    @app.post("/api/repos/create")
    async def create(request: Request):
        body = await request.json()
        repo = f"{body['organization']}/{body['name']}"
        if body["name"] == "forbidden":
            raise HTTPException(403, "You don't have the rights to create a model under this namespace")
        state["repos"].setdefault(repo, {"visibility": body.get("visibility"), "files": {}, "commits": []})
        return {"url": f"{str(request.base_url).rstrip('/')}/{repo}"}

    @app.post("/api/validate-yaml")
    async def validate(request: Request):
        content = (await request.json())["content"]
        yaml.safe_load(content.split("---")[1])  # the card's header must be YAML
        return {"errors": [], "warnings": []}

    @app.post("/api/models/{org}/{name}/preupload/{revision}")
    async def preupload(org: str, name: str, revision: str, request: Request):
        files = (await request.json())["files"]
        return {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}

    @app.post("/api/models/{org}/{name}/commit/{revision}")
    async def commit(org: str, name: str, revision: str, request: Request):
        repo = state["repos"][f"{org}/{name}"]
        lines = [json.loads(line) for line in (await request.body()).splitlines() if line.strip()]
        header = next(item["value"] for item in lines if item["key"] == "header")
        for item in lines:
            if item["key"] == "file":
                repo["files"][item["value"]["path"]] = base64.b64decode(item["value"]["content"])
        oid = hashlib.sha1(json.dumps(header).encode() + str(len(repo["commits"])).encode()).hexdigest()
        repo["commits"].append(header["summary"])
        base = str(request.base_url).rstrip("/")
        return {"commitUrl": f"{base}/{org}/{name}/commit/{oid}", "commitOid": oid, "pullRequestUrl": None}

    return app


@pytest.fixture
def hub(monkeypatch):
    state: dict = {"repos": {}, "requests": []}
    with thread_server(fake_hub(state)) as url:
        monkeypatch.setenv("HF_ENDPOINT", url)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        yield state


@pytest.fixture(scope="module")
def evaluated_run(tiny_model, tmp_path_factory):
    """A short LoRA run on the tiny model, evaluated (eval.json with forgetting and bias)."""
    from tunelab import api
    from tunelab.config import build_config

    folder = tmp_path_factory.mktemp("push")
    data = write_jsonl(folder / "memo.jsonl", MEMO_ROWS)
    cfg = build_config(overrides={"model.name": tiny_model, "data.train": str(data)},
                       sets=["train.max_steps=2", "train.bf16=off", "train.lr=1e-2", "train.batch_size=4",
                             "train.epochs=1", "eval.probe_questions=4", "eval.max_new_tokens=4"])
    run = folder / "memo-lora"
    api.train(cfg, out=run)
    api.evaluate(run, data, limit=4)
    return run


def test_push_uploads_the_adapter_and_a_model_card_in_one_commit(capsys, hub, evaluated_run):
    code, out, err = run_cli(capsys, "export", evaluated_run, "--push-to-hub", "me/memo-lora", "--private")
    assert code == 0, err
    repo = hub["repos"]["me/memo-lora"]
    assert repo["visibility"] == "private" and len(repo["commits"]) == 1
    assert "pushed to" in out and "me/memo-lora" in out
    adapter = evaluated_run / "adapter"
    assert repo["files"]["adapter_model.safetensors"] == (adapter / "adapter_model.safetensors").read_bytes()
    assert repo["files"]["adapter_config.json"] == (adapter / "adapter_config.json").read_bytes()

    card = repo["files"]["README.md"].decode()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["library_name"] == "peft" and {"tunelab", "lora", "sft"} <= set(meta["tags"])
    evaluation = json.loads((evaluated_run / "eval.json").read_text())
    assert f"| loss | {evaluation['base']['loss']:.4g} | {evaluation['tuned']['loss']:.4g} |" in card
    assert f"| qa_accuracy | {evaluation['forgetting']['base']['qa_accuracy']:.4g} |" in card
    assert all(f"| {axis} |" in card for axis in evaluation["bias"]["axes"])
    rows = json.loads((evaluated_run / "data" / "data_card.json").read_text())["splits"]["train"]["rows"]
    assert f"| train | {rows} |" in card

    # the token travels in the Authorization header only, never in a URL
    assert all(auth == f"Bearer {TOKEN}" and TOKEN not in url for _, url, auth in hub["requests"])
    assert {url.split("/api/")[1].split("/")[0] for _, url, _ in hub["requests"]} >= {"repos", "validate-yaml", "models"}


def test_push_of_a_gguf_export_keeps_the_folder_given_with_out(capsys, hub, evaluated_run, tmp_path):
    out = tmp_path / "gguf"
    code, _, err = run_cli(capsys, "export", evaluated_run, "--out", out, "--format", "gguf", "--quant", "q8_0",
                           "--push-to-hub", "me/memo-gguf")
    assert code == 0, err
    repo = hub["repos"]["me/memo-gguf"]
    assert repo["visibility"] == "public"
    assert sorted(repo["files"]) == ["Modelfile", "README.md", "memo-lora-q8_0.gguf"]
    assert repo["files"]["memo-lora-q8_0.gguf"] == (out / "memo-lora-q8_0.gguf").read_bytes()
    assert yaml.safe_load(repo["files"]["README.md"].decode().split("---")[1])["library_name"] == "gguf"


def test_push_without_a_token_or_refused_is_one_line(capsys, hub, evaluated_run, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    code, _, err = run_cli(capsys, "export", evaluated_run, "--push-to-hub", "me/x")
    assert code == 2 and err.startswith("error: ") and "set HF_TOKEN" in err and err.strip().count("\n") == 0
    assert hub["requests"] == []  # refused before any upload

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    code, _, err = run_cli(capsys, "export", evaluated_run, "--out", tmp_path / "kept", "--push-to-hub", "me/forbidden")
    assert code == 2 and "the Hub refused the upload (HTTP 403" in err and err.strip().count("\n") == 0
    assert (tmp_path / "kept" / "adapter_model.safetensors").is_file()  # the export itself is kept

    code, _, err = run_cli(capsys, "export", evaluated_run, "--push-to-hub", "not a repo")
    assert code == 2 and "expected ORG/NAME" in err
