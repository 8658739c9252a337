"""The bundled model with a real adapter, served and called through the `openai` client."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from tests.conftest import write_jsonl
from tunelab import api, resources
from tunelab.config import build_config
from tunelab.data.load import read_rows

pytestmark = pytest.mark.slow


def test_bundled_model_with_an_adapter_answers_through_openai(tmp_path):
    import uvicorn
    from openai import OpenAI

    from tunelab.serve.app import create_app
    from tunelab.serve.engine import Engine, find_adapters

    rows = [r.obj for r in read_rows(resources.path("demo_calendar.jsonl"))][:24]
    data = write_jsonl(tmp_path / "train.jsonl", rows)
    cfg = build_config(overrides={"data.train": str(data), "train.max_steps": 3}, sets=["train.batch_size=4"])
    api.train(cfg, out=tmp_path / "runs" / "calendar")
    engine = Engine("smollm2-135m-instruct", find_adapters("smollm2-135m-instruct", {}, str(tmp_path / "runs")))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(engine), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
        assert "ft:smollm2-135m-instruct:calendar" in [m.id for m in client.models.list().data]
        reply = client.chat.completions.create(
            model="ft:smollm2-135m-instruct:calendar", max_tokens=40, temperature=0,
            messages=[{"role": "user", "content": "Turn this note into a calendar entry.\n\nlunch with Ana Friday 1pm"}])
        assert reply.choices[0].message.content.strip() and reply.usage.completion_tokens > 0
        base = client.chat.completions.create(model="smollm2-135m-instruct", max_tokens=12, temperature=0,
                                              messages=[{"role": "user", "content": "What is the capital of France?"}])
        assert "Paris" in base.choices[0].message.content
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        engine.close()
