"""`tunelab serve --rag NAME=INDEX`: a model name that retrieves before it answers, with the
chunks it used in the response's `sources`, streamed or not; its errors are OpenAI's 400s."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.serve.conftest import AUTH, KEY, thread_server

DOCS = {"oven.md": "The Brightline oven preheats in 7 minutes. Its door locks at 300 degrees.",
        "kettle.md": "The Brightline kettle boils one litre in 3 minutes and switches off by itself."}


@pytest.fixture(scope="module")
def rag_server(base_engine, tiny_model, tmp_path_factory):
    from tunelab.rag.index import build_index
    from tunelab.serve import rag_routes
    from tunelab.serve.app import create_app
    from tunelab.serve.auth import ApiKeys

    folder = tmp_path_factory.mktemp("rag-serve")
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    build_index([folder], folder / "idx", tokenizer=tiny_model, chunk_tokens=24, overlap=4)
    routes = rag_routes.load(rag_routes.parse({"manual": str(folder / "idx")}), {}, base_engine.base_name)
    app = create_app(base_engine, keys=ApiKeys({"test": KEY}), rag=routes)
    with thread_server(app) as url:
        yield url


def chat(url, model, content, **extra):
    return httpx.post(f"{url}/v1/chat/completions", headers=AUTH, timeout=120,
                      json={"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 4,
                            **extra})


def test_a_rag_model_answers_with_the_chunks_it_retrieved(rag_server):
    listed = httpx.get(f"{rag_server}/v1/models", headers=AUTH).json()
    assert "manual" in [m["id"] for m in listed["data"]]
    r = chat(rag_server, "manual", "How long does the kettle take to boil?")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "manual" and body["choices"][0]["message"]["role"] == "assistant"
    assert body["sources"] and body["sources"][0]["source"].endswith("kettle.md")
    base = next(m["id"] for m in listed["data"] if m["id"] != "manual")
    plain = chat(rag_server, base, "How long does the kettle take to boil?").json()
    assert body["usage"]["prompt_tokens"] > plain["usage"]["prompt_tokens"] + 10  # the chunks are in the prompt
    assert "sources" not in plain


def test_the_sources_ride_on_the_last_streamed_chunk(rag_server):
    with httpx.stream("POST", f"{rag_server}/v1/chat/completions", headers=AUTH, timeout=120,
                      json={"model": "manual", "stream": True, "max_tokens": 4,
                            "messages": [{"role": "user", "content": "When does the oven door lock?"}]}) as r:
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    assert r.status_code == 200
    assert "sources" not in events[0] and events[-1]["sources"][0]["source"].endswith("oven.md")


def test_rag_model_errors_are_openai_400s(rag_server):
    r = httpx.post(f"{rag_server}/v1/completions", headers=AUTH, json={"model": "manual", "prompt": "hi"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"
    r = httpx.post(f"{rag_server}/v1/chat/completions", headers=AUTH, timeout=60,
                   json={"model": "manual", "messages": [{"role": "user", "content": "hi"},
                                                         {"role": "assistant", "content": "hello"}]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"


def test_a_bad_index_fails_at_startup_naming_the_route(tmp_path):
    from tunelab.errors import ConfigError
    from tunelab.serve import rag_routes

    with pytest.raises(ConfigError, match="--rag manual"):
        rag_routes.load(rag_routes.parse({"manual": str(tmp_path)}), {}, "base")
    with pytest.raises(ConfigError, match="NAME=INDEX"):
        rag_routes.parse({"manual": ""})
