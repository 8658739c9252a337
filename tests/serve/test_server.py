"""The OpenAI-compatible server on the tiny model, through a real uvicorn on 127.0.0.1 and
the official `openai` client: adapters, streaming, errors, auth, metrics and feedback."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import write_jsonl
from tests.helpers import run_cli
from tests.serve.conftest import thread_server
from tunelab import api
from tunelab.config import build_config

KEY = "test-key"
QUESTIONS = [f"Code word {i}?" for i in range(6)]


def _train(tiny_model, folder, answer: str):
    rows = [{"instruction": q, "output": answer} for q in QUESTIONS]
    data = write_jsonl(folder / f"{answer}.jsonl", rows)
    cfg = build_config(overrides={"model.name": tiny_model, "data.train": str(data), "data.val": str(data),
                                  "train.epochs": 30},
                       sets=["train.lr=1e-2", "train.batch_size=6", "train.bf16=off", "train.scheduler=constant"])
    return api.train(cfg, out=folder / answer)


@pytest.fixture(scope="module")
def server(tiny_model, tmp_path_factory):
    from tunelab.serve.app import create_app
    from tunelab.serve.auth import ApiKeys
    from tunelab.serve.engine import Engine, find_adapters
    from tunelab.serve.store import Store

    folder = tmp_path_factory.mktemp("serve")
    _train(tiny_model, folder, "alpha")
    _train(tiny_model, folder, "bravo")
    adapters = find_adapters(tiny_model, {"a": str(folder / "alpha")}, str(folder))
    engine = Engine(tiny_model, adapters, max_batch=4, max_queue=16, dtype="float32")
    store = Store(folder / "log.sqlite", log_content=True)
    app = create_app(engine, keys=ApiKeys({"test": KEY}), store=store)
    with thread_server(app) as url:
        yield {"url": url, "engine": engine, "folder": folder, "model": tiny_model}
    engine.close()


def client(server):
    from openai import OpenAI

    return OpenAI(base_url=server["url"] + "/v1", api_key=KEY, max_retries=0)


def ask(server, model, question, **kw):
    r = client(server).chat.completions.create(model=model, messages=[{"role": "user", "content": question}],
                                               max_tokens=6, temperature=0, **kw)
    return r


def test_models_lists_base_and_adapters(server):
    names = [m.id for m in client(server).models.list().data]
    m = server["model"]
    assert names[0] == m
    assert set(names[1:]) == {f"ft:{m}:a", f"ft:{m}:alpha", f"ft:{m}:bravo"}


def test_each_adapter_answers_with_its_own_weights(server):
    m = server["model"]
    for _ in range(2):  # interleaved, so a cached adapter never leaks into the other's answers
        assert ask(server, f"ft:{m}:alpha", "Code word 3?").choices[0].message.content == "alpha"
        assert ask(server, f"ft:{m}:bravo", "Code word 3?").choices[0].message.content == "bravo"
    base = ask(server, m, "Code word 3?").choices[0].message.content
    assert base not in ("alpha", "bravo")


def test_usage_and_response_shape(server):
    r = ask(server, f"ft:{server['model']}:alpha", "Code word 1?")
    assert r.object == "chat.completion" and r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens >= 1 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_streaming_through_the_openai_client(server):
    stream = client(server).chat.completions.create(
        model=f"ft:{server['model']}:bravo", messages=[{"role": "user", "content": "Code word 2?"}],
        max_tokens=6, temperature=0, stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == "bravo"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_completions_endpoint(server):
    r = client(server).completions.create(model=server["model"], prompt="Monday", max_tokens=3, temperature=0)
    assert r.object == "text_completion" and r.usage.completion_tokens <= 3


def test_concurrent_requests_are_batched_and_isolated(server):
    from concurrent.futures import ThreadPoolExecutor

    m = server["model"]
    names = [f"ft:{m}:alpha", f"ft:{m}:bravo"] * 4
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda n: ask(server, n, "Code word 4?").choices[0].message.content, names))
    assert answers == ["alpha", "bravo"] * 4


@pytest.mark.parametrize("path, method", [("/v1/models", "GET"), ("/v1/chat/completions", "POST"),
                                          ("/v1/completions", "POST"), ("/v1/feedback", "POST"),
                                          ("/metrics", "GET")])
def test_every_route_but_health_needs_the_key(server, path, method):
    r = httpx.request(method, server["url"] + path, json={})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    r = httpx.request(method, server["url"] + path, json={}, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    assert httpx.get(server["url"] + "/health").status_code == 200


def post(server, path, body, raw=None, headers=None):
    h = {"Authorization": f"Bearer {KEY}", **(headers or {})}
    if raw is not None:
        return httpx.post(server["url"] + path, content=raw, headers={**h, "Content-Type": "application/json"})
    return httpx.post(server["url"] + path, json=body, headers=h)


@pytest.mark.parametrize("body, status, param", [
    ({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}, 404, "model"),
    ({"model": "M", "messages": [{"role": "user", "content": "hi"}], "max_tokens": -1}, 400, "max_tokens"),
    ({"model": "M", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10**9}, 400, "max_tokens"),
    ({"model": "M", "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}, 400, "temperature"),
    ({"model": "M", "messages": "hi"}, 400, "messages"),
    ({"model": "M", "messages": [{"role": "user", "content": "hi"}], "n": 2}, 400, "n"),
    ({"model": "M", "messages": [{"role": "user", "content": "word " * 100}], "max_tokens": 1000}, 400, "max_tokens"),
    ({"model": "M", "messages": [{"role": "user", "content": "word " * 2000}]}, 400, "messages"),
])
def test_bad_requests_get_openai_shaped_errors(server, body, status, param):
    body = {**body, "model": server["model"] if body["model"] == "M" else body["model"]}
    r = post(server, "/v1/chat/completions", body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["param"] == param


def test_invalid_json_and_oversized_bodies(server):
    r = post(server, "/v1/chat/completions", None, raw=b"{not json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = post(server, "/v1/chat/completions", None, raw=b"x" * (2 << 20))
    assert r.status_code == 413 and "error" in r.json()


def test_queue_bound_answers_429_with_retry_after(tiny_model):
    from fastapi.testclient import TestClient

    from tunelab.serve.app import create_app
    from tunelab.serve.engine import Engine

    engine = Engine(tiny_model, {}, max_queue=1)
    engine.pending = 1  # as if one request were already waiting
    with TestClient(create_app(engine)) as c:
        r = c.post("/v1/chat/completions", json={"model": tiny_model, "messages": [{"role": "user", "content": "x"}]})
    engine.close()
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    assert r.json()["error"]["type"] == "rate_limit_error"


def test_cancelled_request_stops_generating(server):
    import asyncio

    from tunelab.serve.engine import Job

    engine = server["engine"]
    loop = asyncio.new_event_loop()
    job = Job(server["model"], engine.tokenizer("hello", add_special_tokens=False)["input_ids"], 900,
              temperature=1.0, loop=loop, events=asyncio.Queue())
    job.cancelled.set()  # the client is gone before its turn
    engine.submit(job)

    async def last_event():
        while True:
            event = await asyncio.wait_for(job.events.get(), timeout=30)
            if event[0] == "done":
                return event

    assert loop.run_until_complete(last_event()) == ("done", "cancelled", 0)
    loop.close()


def test_metrics_move(server):
    h = {"Authorization": f"Bearer {KEY}"}
    before = httpx.get(server["url"] + "/metrics", headers=h).text
    ask(server, server["model"], "Code word 5?")
    after = httpx.get(server["url"] + "/metrics", headers=h).text

    def count(text):
        line = next(x for x in text.splitlines()
                    if x.startswith("tunelab_requests_total") and f'model="{server["model"]}"' in x
                    and 'status="200"' in x)
        return float(line.split()[-1])

    assert count(after) == count(before) + 1
    assert "tunelab_time_to_first_token_seconds_bucket" in after and "tunelab_queue_depth" in after


def test_feedback_round_trip_to_a_preference_file(server, capsys, tmp_path):
    r = ask(server, f"ft:{server['model']}:alpha", "Code word 0?")
    ok = post(server, "/v1/feedback", {"request_id": r.id, "preferred_output": "The code word is alpha."})
    assert ok.status_code == 200
    assert post(server, "/v1/feedback", {"request_id": "nope", "rating": 1}).status_code == 404
    out = tmp_path / "prefs.jsonl"
    code, stdout, err = run_cli(capsys, "feedback", "export", "--db", server["folder"] / "log.sqlite", "--out", out)
    assert code == 0, err
    pairs = [json.loads(x) for x in out.read_text().splitlines()]
    assert {"prompt": [{"role": "user", "content": "Code word 0?"}], "chosen": "The code word is alpha.",
            "rejected": "alpha"} in pairs
    code, stdout, _ = run_cli(capsys, "data", "check", out, "--model", server["model"], "--json")
    assert code == 0 and json.loads(stdout)["format"] == "preference"


def test_monitor_reports_traffic_and_drift(server, capsys):
    from tunelab.serve.monitor import ks_statistic

    assert ks_statistic([1, 2, 3], [1, 2, 3]) == 0.0
    assert ks_statistic([1, 2], [10, 20]) == 1.0
    assert ks_statistic([1, 2, 3, 4], [3, 4, 5, 6]) == 0.5
    ask(server, f"ft:{server['model']}:alpha", "Something entirely new and different?")
    code, out, err = run_cli(capsys, "monitor", "--db", server["folder"] / "log.sqlite", "--model", server["model"],
                             "--runs", server["folder"], "--json")
    assert code == 0, err
    report = json.loads(out)
    alpha = report["models"][f"ft:{server['model']}:alpha"]
    assert alpha["requests"] >= 2 and alpha["latency_ms"]["p50"] > 0
    drift = alpha["drift"]
    assert drift["prompt_tokens_trained_p50"] > 0 and 0 <= drift["length_ks"] <= 1
    assert 0 < drift["unseen_word_share"] < 1  # "code word N" was trained on; "entirely new" was not


def test_prompt_learning_runs_are_refused_with_a_reason(tiny_model, tmp_path):
    from tunelab.config import RunConfig
    from tunelab.errors import RunError
    from tunelab.serve.engine import find_adapters

    run = tmp_path / "prefix-run"
    (run / "adapter").mkdir(parents=True)
    cfg = RunConfig.model_validate({"model": {"name": tiny_model}, "method": {"name": "prefix"}})
    (run / "config.yaml").write_text(cfg.to_yaml())
    (run / "adapter" / "adapter_config.json").write_text('{"peft_type": "PREFIX_TUNING"}')
    with pytest.raises(RunError, match="prefix.*LoRA"):
        find_adapters(tiny_model, {"p": str(run)}, None)
    assert find_adapters(tiny_model, {}, str(tmp_path)) == {}  # skipped when found by scanning a folder
