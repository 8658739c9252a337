"""Batched generation: rows leave and join a running batch, yet every answer is what the model
gives to that prompt alone; the reference loss scored from the same prefill is the plain one."""

from __future__ import annotations

import pytest
import torch

from tunelab.data.tokens import encode_chat, encode_prompt
from tunelab.inference.generate import generate, generate_and_score, stop_ids
from tunelab.evaluate.metrics import reference_loss

QUESTIONS = ["Turn this note into a calendar entry.", "What is the capital of France?", "Monday", "yes",
             "The quick brown fox jumps over the lazy dog. The quick brown fox.", "Friday at 9 AM, room 4",
             "Paris or Rome?", "ok", "Berlin. Madrid. Rome. Paris. What is the capital of France?", "no"]


@pytest.fixture(scope="module")
def tiny(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model)


def one_at_a_time(model, tok, prompt: list[int], max_new: int) -> str:
    with torch.inference_mode():
        out = model.generate(input_ids=torch.tensor([prompt]), max_new_tokens=max_new, do_sample=False,
                             pad_token_id=tok.pad_token_id)[0, len(prompt):].tolist()
    if out and out[-1] in stop_ids(model, tok):
        out = out[:-1]  # model.generate keeps the stop token; answers never include it
    return tok.decode(out, skip_special_tokens=True).strip()


def test_rows_that_finish_early_leave_and_others_join(tiny):
    model, tok = tiny
    prompts = [encode_prompt(tok, [{"role": "user", "content": q}]) for q in QUESTIONS]
    # a random model rarely says EOS: make a token it often emits a stop token, so rows end at
    # different steps and the batch of 4 shrinks, refills and merges caches of other lengths
    free = generate(model, tok, prompts, max_new_tokens=24, batch_size=len(prompts))
    ids = [tok(a, add_special_tokens=False)["input_ids"] for a in free]
    counts: dict[int, int] = {}
    for row in ids:
        for t in set(row[2:]):
            counts[t] = counts.get(t, 0) + 1
    stop = max((t for t, c in counts.items() if c < len(ids)), key=counts.get)
    model.generation_config.eos_token_id = [tok.eos_token_id, stop]
    try:
        batched = generate(model, tok, prompts, max_new_tokens=24, batch_size=4)
        alone = [one_at_a_time(model, tok, p, 24) for p in prompts]
    finally:
        model.generation_config.eos_token_id = tok.eos_token_id
    assert batched == alone
    lengths = {len(tok(a, add_special_tokens=False)["input_ids"]) for a in batched}
    assert len(lengths) > 2, "the stop token should end rows at different lengths"


def test_loss_from_the_shared_prefill_equals_the_plain_reference_loss(tiny):
    model, tok = tiny
    convs = [[{"role": "user", "content": q}, {"role": "assistant", "content": a}]
             for q, a in zip(QUESTIONS, ["Event: Date:", "Paris.", "Tuesday", "no", "lazy dog", "Time: 9 AM",
                                         "Rome", "yes", "Madrid", "ok"])]
    prompts = [encode_prompt(tok, c[:1]) for c in convs]
    encoded = [encode_chat(tok, c, 512, False) for c in convs]
    refs = []
    for p, e in zip(prompts, encoded):
        assert e.input_ids[:len(p)] == p
        refs.append((e.input_ids[len(p):], e.labels[len(p):]))
    answers, loss = generate_and_score(model, tok, prompts, refs, max_new_tokens=8, batch_size=4)
    assert loss == pytest.approx(reference_loss(model, encoded, batch_size=3), rel=1e-5)
    assert answers == generate(model, tok, prompts, max_new_tokens=8, batch_size=10)


def test_sampling_is_seeded(tiny):
    model, tok = tiny
    prompts = [encode_prompt(tok, [{"role": "user", "content": q}]) for q in QUESTIONS[:4]]
    a = generate(model, tok, prompts, max_new_tokens=8, temperature=1.0, top_p=0.9, seed=3)
    b = generate(model, tok, prompts, max_new_tokens=8, temperature=1.0, top_p=0.9, seed=3)
    assert a == b
    assert a != generate(model, tok, prompts, max_new_tokens=8)


def test_columns_no_row_needs_are_dropped(tiny):
    from tunelab.inference.generate import DecodeBatch

    model, tok = tiny
    long, short = list(range(5, 45)), [7, 8, 9]
    batch = DecodeBatch(model, tok.pad_token_id).prefill([long, short])
    alone = DecodeBatch(model, tok.pad_token_id).prefill([short])
    for _ in range(3):
        both, single = batch.logits.argmax(-1), alone.logits.argmax(-1)
        assert int(both[1]) == int(single[0])
        batch.advance(both)
        alone.advance(single)
    batch.keep([1])  # the long row leaves: its 37 extra prompt columns are padding for the short one
    assert batch.mask.shape[1] == len(short) + 3 == alone.mask.shape[1]
    assert all(layer.keys.shape[-2] == len(short) + 3 for layer in batch.cache.layers)
    batch.advance(batch.logits.argmax(-1))
    alone.advance(alone.logits.argmax(-1))
    assert torch.allclose(batch.logits, alone.logits, atol=1e-5)


SYSTEM = {"role": "system", "content": "You answer calendar questions for a small team. Keep answers short, "
                                       "use the team's time zone and name every person who is invited."}


def test_a_start_shared_by_every_prompt_runs_once_and_changes_nothing(tiny):
    from tunelab.inference.generate import DecodeBatch, _shared_start

    model, tok = tiny
    prompts = [encode_prompt(tok, [SYSTEM, {"role": "user", "content": q}]) for q in QUESTIONS]
    shared = _shared_start(prompts)
    assert shared >= 20 and all(p[:shared] == prompts[0][:shared] for p in prompts)
    assert shared < min(len(p) for p in prompts)  # every row keeps its own last prompt token
    batch = DecodeBatch(model, tok.pad_token_id).prefill(prompts)
    # the shared start sits in one set of columns, each row's padding after it
    assert batch.mask.shape[1] == shared + max(len(p) for p in prompts) - shared
    assert bool(batch.mask[:, :shared].all())
    for r, p in enumerate(prompts):
        alone = DecodeBatch(model, tok.pad_token_id).prefill([p])
        assert torch.allclose(batch.logits[r], alone.logits[0], atol=1e-4)
    assert generate(model, tok, prompts, max_new_tokens=12, batch_size=10) == \
        [one_at_a_time(model, tok, p, 12) for p in prompts]


def test_loss_with_a_shared_start_equals_the_plain_reference_loss(tiny):
    model, tok = tiny
    convs = [[SYSTEM, {"role": "user", "content": q}, {"role": "assistant", "content": a}]
             for q, a in zip(QUESTIONS, ["Event", "Paris.", "Tuesday", "no", "dog", "9 AM", "Rome", "yes", "x", "ok"])]
    prompts = [encode_prompt(tok, c[:2]) for c in convs]
    encoded = [encode_chat(tok, c, 512, False) for c in convs]
    refs = [(e.input_ids[len(p):], e.labels[len(p):]) for p, e in zip(prompts, encoded)]
    _, loss = generate_and_score(model, tok, prompts, refs, max_new_tokens=4, batch_size=10)
    assert loss == pytest.approx(reference_loss(model, encoded, batch_size=3), rel=1e-5)


def test_short_or_unshared_starts_are_not_split_off():
    from tunelab.inference.generate import _shared_start

    assert _shared_start([list(range(100))]) == 0  # one row: nothing to share
    assert _shared_start([[1, 2, 3], [1, 2, 4]]) == 0  # two tokens saved do not pay for a forward
    assert _shared_start([[7] * 70 + [1], [7] * 70 + [2]]) == 70
    assert _shared_start([[7] * 70, [7] * 90]) == 69  # the shorter prompt keeps its last token


def test_a_prefill_takes_no_more_rows_than_its_padded_tokens_allow(monkeypatch):
    import collections

    from tunelab.inference import generate as gen

    monkeypatch.setattr(gen, "PREFILL_CELLS", 100)
    prompts = [[1] * 10, [1] * 10, [1] * 20, [1] * 30, [1] * 200]
    refs = [([2] * 5, [2] * 5)] * 4 + [([2] * 10, [2] * 10)]
    waiting = collections.deque(range(5))
    # 10+5 per row: 6 rows would fit, but the third row widens every row to 20+5 (3 x 25 = 75),
    # the fourth to 30+5 (4 x 35 = 140 > 100)
    assert gen._next_prefill(waiting, prompts, refs, room=8) == [0, 1, 2]
    assert gen._next_prefill(waiting, prompts, refs, room=8) == [3]
    assert gen._next_prefill(waiting, prompts, refs, room=8) == [4]  # alone over the budget: still taken
    assert gen._next_prefill(collections.deque(range(5)), prompts, None, room=2) == [0, 1]


def test_continuations_scored_after_a_shared_prompt_match_whole_sequences(tiny):
    from tunelab.evaluate.scoring import _whole_sequences, continuation_logprobs

    model, tok = tiny
    prompts = [tok(t, add_special_tokens=False)["input_ids"] for t in
               ["The nurse was", "The engineer from Spain was", "A very old man was"]]
    conts = [tok(w, add_special_tokens=False)["input_ids"] for w in [" kind", " rude and loud", " x", " not at all helpful"]]
    pairs = [(p, c) for p in prompts for c in conts]
    for batch_size in (128, 5):
        assert continuation_logprobs(model, pairs, batch_size=batch_size) == \
            pytest.approx(_whole_sequences(model, pairs), abs=1e-4)


def test_reference_tokens_the_model_would_pick_are_not_decoded_again(tiny, monkeypatch):
    from tunelab.inference import generate as gen

    model, tok = tiny
    prompts = [encode_prompt(tok, [SYSTEM, {"role": "user", "content": q}]) for q in QUESTIONS]
    own = gen.generate_ids(model, tok, prompts, max_new_tokens=16, temperature=0.0)
    plain = generate(model, tok, prompts, max_new_tokens=16, batch_size=4)
    steps = []
    real_advance = gen.DecodeBatch.advance
    monkeypatch.setattr(gen.DecodeBatch, "advance", lambda self, t: (steps.append(len(t)), real_advance(self, t)))

    # references equal to the model's own greedy answers: every token is accepted from the prefill
    refs = [(ids, ids) for ids in own]
    answers, _ = generate_and_score(model, tok, prompts, refs, max_new_tokens=16, batch_size=4)
    assert answers == plain
    assert sum(steps) <= len(prompts)  # at most one step per row (a row whose whole answer was drafted: none)

    # references that leave the model's answer half way: accepted up to there, decoded after
    steps.clear()
    bent = [(ids[:len(ids) // 2] + [(ids[len(ids) // 2] + 1) % tok.vocab_size] + ids[len(ids) // 2 + 1:],) * 2
            for ids in own]
    answers, _ = generate_and_score(model, tok, prompts, bent, max_new_tokens=16, batch_size=4)
    assert answers == plain
    assert 0 < sum(steps) < sum(len(ids) for ids in own)

    # unrelated references change nothing either
    answers, _ = generate_and_score(model, tok, prompts, [([5, 6, 7], [5, 6, 7])] * len(prompts),
                                    max_new_tokens=16, batch_size=4)
    assert answers == plain
