"""Property-based fuzzing of the whole API from its own OpenAPI schema (schemathesis), with
the key, on the tiny model: valid and invalid requests alike never get a 5xx, and every error
is in OpenAI's shape. Examples are bounded so the run fits a CI job.

The cases are drawn with schemathesis' strategies inside a plain test (rather than its pytest
plugin's lazy fixture loader, which does not run on pytest 9), against a server in a thread."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.serve.conftest import AUTH, KEY, thread_server

EXAMPLES = 25  # per operation and mode (valid / invalid)


@pytest.fixture(scope="module")
def fuzz_server(base_engine, tmp_path_factory):
    from tunelab.serve.app import create_app
    from tunelab.serve.auth import ApiKeys
    from tunelab.serve.limits import Limits
    from tunelab.serve.store import Store

    limits = Limits(max_body_bytes=32 * 1024, max_prompt_chars=4000)
    store = Store(tmp_path_factory.mktemp("fuzz") / "log.sqlite")
    app = create_app(base_engine, keys=ApiKeys({"fuzz": KEY}), store=store, limits=limits)
    with thread_server(app, limits) as url:
        yield {"url": url, "model": base_engine.base_name}
    store.close()


def _aim_at_the_model(case, served: str) -> None:
    """Most generated model names are unknown (404): name the served model instead, with short
    generations, so the fuzzer reaches tokenising and the engine too."""
    body = case.body
    if isinstance(body, dict) and "model" in body:
        body["model"] = served
        for field in ("max_tokens", "max_completion_tokens"):
            if isinstance(body.get(field), int) and not isinstance(body[field], bool) and body[field] > 8:
                body[field] = 8


def openai_error_shape(ctx, response, case) -> None:
    """Every 4xx or 5xx body is {"error": {"message", "type", "param", "code"}}."""
    if response.status_code < 400:
        return
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body


def test_no_input_gets_a_5xx_and_every_error_has_openai_shape(fuzz_server):
    schema = schemathesis.openapi.from_url(fuzz_server["url"] + "/openapi.json", headers=AUTH)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/chat/completions", "/v1/completions", "/v1/feedback"}
    for operation in operations:
        # a GET here takes no input, so there is nothing to make invalid
        invalid = [GenerationMode.NEGATIVE] if operation.method.upper() == "POST" else []
        for mode in [GenerationMode.POSITIVE, *invalid]:
            @given(case=operation.as_strategy(generation_mode=mode), aim=st.booleans())
            @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            def run(case, aim):
                if aim:
                    _aim_at_the_model(case, fuzz_server["model"])
                case.call_and_validate(base_url=fuzz_server["url"], headers=AUTH, timeout=60,
                                       checks=[not_a_server_error, openai_error_shape])

            run()
