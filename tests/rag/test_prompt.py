"""The RAG prompt: chunks in rank order through the chat template, within the budget; chunks
are cut or dropped to fit, the question never."""

from __future__ import annotations

import pytest

from tunelab.errors import DataError
from tunelab.models.load import load_tokenizer, resolve
from tunelab.rag.chunking import Chunk
from tunelab.rag.prompt import build_prompt, context_limit, user_turn
from tunelab.rag.retrieve import Hit

QUESTION = "When does the Monday meeting in room 12 start, and who runs it?"


@pytest.fixture(scope="module")
def tok(tiny_model):
    return load_tokenizer(resolve(tiny_model))


def hits(n: int, words: int = 60) -> list[Hit]:
    return [Hit(Chunk(i, 0, 0, " ".join(f"fact{i}-{w}" for w in range(words))), f"doc{i}.md", 1.0 / (i + 1), i + 1)
            for i in range(n)]


def test_everything_fits_in_a_large_budget(tok):
    prompt = build_prompt(tok, [{"role": "user", "content": QUESTION}], hits(3, 10), budget=5000)
    assert [s["source"] for s in prompt.sources] == ["doc0.md", "doc1.md", "doc2.md"]
    assert prompt.dropped == 0 and not any(s["cut"] for s in prompt.sources)
    text = tok.decode(prompt.ids)
    assert text.index("fact0-0") < text.index("fact1-0") < text.index("fact2-0") < text.index(QUESTION)
    assert text.rstrip().endswith("assistant")  # rendered by the chat template, ready for the answer


@pytest.mark.parametrize("budget", [260, 400, 700, 1200])
def test_the_budget_cuts_chunks_never_the_question(tok, budget):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": QUESTION}]
    prompt = build_prompt(tok, messages, hits(6), budget=budget)
    assert len(prompt.ids) <= budget
    text = tok.decode(prompt.ids)
    assert QUESTION in text and "Be brief." in text
    assert prompt.messages[-1]["content"].endswith(f"Question: {QUESTION}")
    assert len(prompt.sources) + prompt.dropped == 6
    assert prompt.dropped > 0  # six long chunks never fit these budgets
    assert all(not s["cut"] for s in prompt.sources[:-1])  # only the last chunk used may be cut
    assert prompt.sources[-1]["cut"] and prompt.sources[-1]["text"].endswith("…")  # each chunk alone overflows


def test_a_question_that_does_not_fit_alone_is_an_error(tok):
    with pytest.raises(DataError, match="more than the 20"):
        build_prompt(tok, [{"role": "user", "content": QUESTION * 5}], hits(2), budget=20)


def test_no_hits_still_gives_a_prompt_that_says_so(tok):
    prompt = build_prompt(tok, [{"role": "user", "content": QUESTION}], [], budget=500)
    assert prompt.sources == [] and "(nothing found)" in tok.decode(prompt.ids)
    assert user_turn("q?", [("a.md", "alpha")]).endswith("[1] a.md\nalpha\n\nQuestion: q?")


def test_the_context_limit_is_the_smaller_of_model_and_tokenizer(tok):
    class Config:
        max_position_embeddings = 1024

    class Model:
        config = Config()

    assert context_limit(Model(), tok) == min(1024, tok.model_max_length)
    tok_limit = tok.model_max_length
    tok.model_max_length = 300
    try:
        assert context_limit(Model(), tok) == 300
    finally:
        tok.model_max_length = tok_limit
