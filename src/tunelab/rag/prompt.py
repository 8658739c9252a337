"""The prompt a RAG answer is generated from: retrieved chunks and the question in one user
turn, rendered by the model's own chat template, within the model's context window.

Chunks go in best first; the one that does not fit whole is cut to the room left and the rest
are dropped. The question and the earlier turns are never cut: a question that does not fit on
its own is an error."""

from __future__ import annotations

from dataclasses import dataclass, field

from tunelab.data.tokens import encode_prompt
from tunelab.errors import DataError
from tunelab.rag.retrieve import Hit

INSTRUCTION = ("Answer the question using the context below. If the context does not hold the answer, "
               "say that you do not know.")
MIN_CHUNK_TOKENS = 16  # a cut chunk shorter than this is noise: drop it instead
NO_LIMIT = 1_000_000  # tokenizers without a limit report model_max_length as a huge number


@dataclass
class RagPrompt:
    ids: list[int]
    messages: list[dict]
    sources: list[dict] = field(default_factory=list)  # the chunks used: rank, source, score, text, cut
    dropped: int = 0  # retrieved chunks left out for lack of room


def context_limit(model, tokenizer) -> int:
    """Tokens the model attends over: its position table, or the tokenizer's stated limit."""
    limits = [getattr(getattr(model, "config", None), "max_position_embeddings", None),
              getattr(tokenizer, "model_max_length", None)]
    limits = [n for n in limits if isinstance(n, int) and 0 < n < NO_LIMIT]
    return min(limits) if limits else 2048


def user_turn(question: str, passages: list[tuple[str, str]]) -> str:
    if not passages:
        return f"{INSTRUCTION}\n\nContext: (nothing found)\n\nQuestion: {question}"
    context = "\n\n".join(f"[{i}] {source}\n{text.strip()}" for i, (source, text) in enumerate(passages, 1))
    return f"{INSTRUCTION}\n\nContext:\n{context}\n\nQuestion: {question}"


def with_context(messages: list[dict], passages: list[tuple[str, str]]) -> list[dict]:
    """``messages`` with the last (user) turn wrapped in the instruction and the passages."""
    last = messages[-1]
    return [*messages[:-1], {"role": last["role"], "content": user_turn(last["content"], passages)}]


def build_prompt(tokenizer, messages: list[dict], hits: list[Hit], budget: int) -> RagPrompt:
    """Token ids of ``messages`` (ending with the user's question) with as many of ``hits`` as
    fit in ``budget`` tokens (the context window less the answer's tokens)."""
    bare = encode_prompt(tokenizer, with_context(messages, []))
    if len(bare) > budget:
        raise DataError(f"the question and its conversation take {len(bare)} tokens, more than the {budget} the "
                        "model's context leaves after the answer; shorten the question or --max-new-tokens")
    passages: list[tuple[str, str]] = []
    used: list[dict] = []
    ids = bare
    for hit in hits:
        candidate = encode_prompt(tokenizer, with_context(messages, [*passages, (hit.source, hit.chunk.text)]))
        text, cut = hit.chunk.text, False
        if len(candidate) > budget:
            text = cut_to_fit(tokenizer, messages, passages, hit, budget)
            if text is None:
                break
            candidate, cut = encode_prompt(tokenizer, with_context(messages, [*passages, (hit.source, text)])), True
        passages.append((hit.source, text))
        used.append({"rank": hit.rank, "source": hit.source, "score": round(hit.score, 4), "text": text.strip(),
                     "cut": cut})
        ids = candidate
        if cut:
            break
    return RagPrompt(ids, with_context(messages, passages), used, len(hits) - len(used))


def cut_to_fit(tokenizer, messages: list[dict], passages: list[tuple[str, str]], hit: Hit,
               budget: int) -> str | None:
    """The longest head of ``hit``'s text (whole tokens) that still fits, or None when fewer than
    ``MIN_CHUNK_TOKENS`` would."""
    offsets = tokenizer(hit.chunk.text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    keep = len(offsets)
    while keep >= MIN_CHUNK_TOKENS:
        text = hit.chunk.text[:offsets[keep - 1][1]] + " …"
        over = len(encode_prompt(tokenizer, with_context(messages, [*passages, (hit.source, text)]))) - budget
        if over <= 0:
            return text
        keep -= over  # joins at the cut can merge tokens differently, hence the loop
    return None
