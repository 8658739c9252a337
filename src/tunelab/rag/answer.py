"""One RAG answer: retrieve, build the prompt within the context budget, generate, cite."""

from __future__ import annotations

from pathlib import Path

from tunelab.errors import DataError
from tunelab.inference.generate import generate
from tunelab.inference.load import load_run
from tunelab.rag.index import Index, load_index
from tunelab.rag.prompt import RagPrompt, build_prompt, context_limit
from tunelab.rag.retrieve import search


def rag_prompt(index: Index, model, tokenizer, messages: list[dict], *, k: int = 4, retriever: str | None = None,
               max_new_tokens: int = 256) -> RagPrompt:
    """The prompt for the conversation ``messages`` (its last turn is the user's question) with
    the ``k`` chunks retrieved for that question, as many as fit beside a ``max_new_tokens``
    answer. A server answers from ``.ids`` and returns ``.sources``."""
    if not messages or messages[-1].get("role") != "user" or not str(messages[-1].get("content", "")).strip():
        raise DataError("the last message must be the user's question (role 'user', non-empty content)")
    hits = search(index, messages[-1]["content"], k, retriever)
    return build_prompt(tokenizer, messages, hits, context_limit(model, tokenizer) - max_new_tokens)


def ask(index: str | Path, target: str | Path, question: str, *, k: int = 4, retriever: str | None = None,
        max_new_tokens: int = 256, dtype: str = "float32") -> dict:
    """Answer ``question`` with the model or run ``target`` from the chunks of ``index`` that
    retrieval finds: {answer, sources, dropped, prompt_tokens}."""
    idx = load_index(index)
    loaded = load_run(target, "chat", dtype)
    prompt = rag_prompt(idx, loaded.model, loaded.tokenizer, [{"role": "user", "content": question}], k=k,
                        retriever=retriever, max_new_tokens=max_new_tokens)
    answer = generate(loaded.model, loaded.tokenizer, [prompt.ids], max_new_tokens=max_new_tokens, batch_size=1,
                      seed=None)[0]
    return {"answer": answer, "sources": prompt.sources, "dropped": prompt.dropped,
            "prompt_tokens": len(prompt.ids), "retriever": retriever or idx.retriever}
