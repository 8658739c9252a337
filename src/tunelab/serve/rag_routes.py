"""Model names that retrieve before they answer: `tunelab serve --rag NAME=INDEX[:RUN]`.

A request to NAME gets the chunks of INDEX retrieved for its last user message placed in the
prompt (within the context budget, as `tunelab rag ask` does), is answered by the base model or
by RUN's adapter, and its response carries the chunks used in an extra top-level field,
``sources``: a list of {rank, source, score, text, cut}.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tunelab.errors import ConfigError, TunelabError

K = 4  # chunks retrieved per question


@dataclass
class RagRoute:
    name: str  # the model name clients send
    index: object  # tunelab.rag.index.Index
    model: str  # the engine's model that answers (the base or an adapter's served name)


def parse(specs: dict[str, str]) -> dict[str, tuple[Path, str | None]]:
    """NAME -> (index folder, run folder or None) from NAME=INDEX[:RUN] values."""
    out = {}
    for name, value in specs.items():
        index, _, run = value.partition(":")
        if not name or not index:
            raise ConfigError(f"--rag {name}={value}: expected NAME=INDEX[:RUN]")
        out[name] = (Path(index), run or None)
    return out


def load(specs: dict[str, tuple[Path, str | None]], served: dict[str, str], base: str) -> dict[str, RagRoute]:
    """The routes, each index loaded now so a bad folder fails at startup, not on a request.
    ``served`` maps each RUN folder to the name the engine serves its adapter under."""
    from tunelab.rag.index import load_index

    routes = {}
    for name, (index, run) in specs.items():
        try:
            loaded = load_index(index)
        except TunelabError as exc:
            raise ConfigError(f"--rag {name}: {exc}") from None
        routes[name] = RagRoute(name, loaded, served[run] if run else base)
    return routes


def prompt(route: RagRoute, engine, messages: list[dict], max_new_tokens: int):
    """The retrieval-augmented prompt (``.ids``, ``.sources``) for a chat request."""
    from tunelab.rag.answer import rag_prompt

    return rag_prompt(route.index, engine.model, engine.tokenizer, messages, k=K, max_new_tokens=max_new_tokens)
