"""One request never fails another inside the engine: failures injected into the model's
forward (an error, non-finite scores, out-of-memory) end only the request that causes them,
and answers of the others are the same as without the failure."""

from __future__ import annotations

import asyncio

import pytest
import torch

from tunelab.serve.engine import Adapter, Engine, Job

PROMPTS = ["The quick brown fox", "Monday Tuesday", "What is the capital of France?", "room meeting at noon"]
POISON = "~~~~ poison ~~~~"


@pytest.fixture(scope="module")
def engine(tiny_model, tmp_path_factory):
    broken = tmp_path_factory.mktemp("no-adapter")  # a folder with no adapter in it
    engine = Engine(tiny_model, {"ft:broken": Adapter("ft:broken", broken)}, max_batch=4, max_queue=16,
                    dtype="float32")
    yield engine
    engine.close()


def ids(engine, text: str) -> list[int]:
    return engine.tokenizer(text, add_special_tokens=False)["input_ids"]


def poison_id(engine) -> int:
    return ids(engine, POISON)[0]


async def _finish(job: Job, text: str = "") -> tuple[str, tuple]:
    while True:
        event = await asyncio.wait_for(job.events.get(), timeout=120)
        if event[0] == "delta":
            text += event[1]
        else:
            return text, event


def run(engine, specs: list[dict], *, late: list[dict] | None = None) -> list[tuple[str, tuple]]:
    """Submit jobs (``specs``: Job fields) together; ``late`` ones once the first has streamed
    a token. Returns (text, last event) per job, in order."""
    loop = asyncio.new_event_loop()

    def make(spec):
        spec = {"model": engine.base_name, "max_new_tokens": 12, "temperature": 0.0, **spec}
        return Job(loop=loop, events=asyncio.Queue(), **spec)

    async def main():
        jobs = [make(s) for s in specs]
        for job in jobs:
            engine.submit(job)
        start = [""] * len(jobs)
        if late:
            first = await asyncio.wait_for(jobs[0].events.get(), timeout=120)
            assert first[0] == "delta", first  # the first request is decoding
            start[0] = first[1]
            extra = [make(s) for s in late]
            for job in extra:
                engine.submit(job)
            jobs += extra
            start += [""] * len(extra)
        return await asyncio.gather(*(_finish(j, t) for j, t in zip(jobs, start)))

    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


def reference(engine, prompts=PROMPTS, max_new_tokens=12) -> list[str]:
    return [text for text, _ in (run(engine, [{"prompt_ids": ids(engine, p), "max_new_tokens": max_new_tokens}])[0]
                                 for p in prompts)]


def inject(monkeypatch, engine, fail):
    """Wrap the model's forward: ``fail(input_ids, output)`` may raise, or edit the output."""
    original = engine.model.forward

    def forward(*args, **kwargs):
        fail(kwargs["input_ids"], None)
        out = original(*args, **kwargs)
        fail(kwargs["input_ids"], out)
        return out

    monkeypatch.setattr(engine.model, "forward", forward)


def _prefill(input_ids) -> bool:
    return input_ids.shape[1] > 1


def test_a_prefill_error_fails_only_the_request_that_causes_it(engine, monkeypatch):
    expected = reference(engine, PROMPTS[:2])
    bad = poison_id(engine)

    def fail(input_ids, out):
        if out is None and _prefill(input_ids) and bool((input_ids == bad).any()):
            raise RuntimeError("injected failure")

    inject(monkeypatch, engine, fail)
    poison = {"prompt_ids": ids(engine, POISON)}
    # in the same prefill as the good request, then joining it while it decodes
    together = run(engine, [{"prompt_ids": ids(engine, PROMPTS[0])}, poison])
    late = run(engine, [{"prompt_ids": ids(engine, PROMPTS[1]), "max_new_tokens": 12}], late=[poison])
    for (good_text, good_end), (_, poison_end), want in ((together[0], together[1], expected[0]),
                                                          (late[0], late[1], expected[1])):
        assert good_end[0] == "done" and good_text == want
        assert poison_end[0] == "error" and poison_end[2] == 500 and "injected failure" in poison_end[1]
    assert engine.pending == 0


def test_non_finite_scores_fail_only_their_row(engine, monkeypatch):
    expected = reference(engine, PROMPTS[:1])
    bad = poison_id(engine)

    def fail(input_ids, out):
        if out is not None and _prefill(input_ids):
            rows = (input_ids == bad).any(-1)
            out.logits[rows.to(out.logits.device)] = float("nan")

    inject(monkeypatch, engine, fail)
    (good_text, good_end), (_, poison_end) = run(engine, [{"prompt_ids": ids(engine, PROMPTS[0])},
                                                          {"prompt_ids": ids(engine, POISON)}])
    assert good_end[0] == "done" and good_text == expected[0]
    assert poison_end[0] == "error" and "not finite" in poison_end[1]


def test_out_of_memory_in_prefill_retries_at_half_size(engine, monkeypatch):
    expected = reference(engine)

    def fail(input_ids, out):
        if out is None and _prefill(input_ids) and input_ids.shape[0] > 2:
            raise torch.OutOfMemoryError("injected: out of memory")

    inject(monkeypatch, engine, fail)
    results = run(engine, [{"prompt_ids": ids(engine, p)} for p in PROMPTS])
    assert [end[0] for _, end in results] == ["done"] * 4
    assert [text for text, _ in results] == expected


def test_out_of_memory_while_decoding_sends_rows_back_without_changing_answers(engine, monkeypatch):
    expected = reference(engine, max_new_tokens=16)
    steps = {"failed": 0}

    def fail(input_ids, out):
        if out is None and not _prefill(input_ids) and input_ids.shape[0] > 2:
            steps["failed"] += 1
            raise torch.OutOfMemoryError("injected: out of memory")

    inject(monkeypatch, engine, fail)
    results = run(engine, [{"prompt_ids": ids(engine, p), "max_new_tokens": 16} for p in PROMPTS])
    assert steps["failed"] >= 1  # the 4-row batch did run out, and went on with 2
    assert [end[0] for _, end in results] == ["done"] * 4
    assert [text for text, _ in results] == expected


def test_a_request_too_large_for_memory_fails_alone_with_503(engine, monkeypatch):
    expected = reference(engine, PROMPTS[:2])
    long_prompt = ids(engine, "word " * 60)

    def fail(input_ids, out):
        if out is None and _prefill(input_ids) and input_ids.shape[1] >= len(long_prompt):
            raise torch.OutOfMemoryError("injected: out of memory")

    inject(monkeypatch, engine, fail)
    results = run(engine, [{"prompt_ids": ids(engine, PROMPTS[0])}, {"prompt_ids": long_prompt},
                           {"prompt_ids": ids(engine, PROMPTS[1])}])
    assert results[1][1][0] == "error" and results[1][1][2] == 503 and results[1][1][3] == "out_of_memory"
    assert [results[0][0], results[2][0]] == expected
    assert engine.pending == 0


def test_bad_seed_and_tiny_temperature_never_touch_other_requests(engine):
    good = {"prompt_ids": ids(engine, PROMPTS[0])}
    greedy = reference(engine, PROMPTS[:1])[0]
    results = run(engine, [good, {"prompt_ids": ids(engine, PROMPTS[1]), "seed": 2**70, "temperature": 1.0},
                           {"prompt_ids": ids(engine, PROMPTS[0]), "temperature": 5e-324}])
    assert results[0] == (greedy, results[0][1]) and results[0][1][0] == "done"
    assert results[1][1][0] == "error" and results[1][1][2] == 400
    assert results[2][0] == greedy  # a temperature that small is greedy


def test_an_adapter_that_cannot_load_fails_only_its_requests(engine):
    expected = reference(engine, PROMPTS[:1])
    results = run(engine, [{"prompt_ids": ids(engine, PROMPTS[0])},
                           {"prompt_ids": ids(engine, PROMPTS[0]), "model": "ft:broken"}])
    assert results[0][0] == expected[0] and results[0][1][0] == "done"
    assert results[1][1][0] == "error" and "could not load 'ft:broken'" in results[1][1][1]
    assert engine.pending == 0
