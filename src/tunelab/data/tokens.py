"""Turn chat messages into token ids and labels with the model's own chat template.

Loss falls on assistant turns only (unless ``train_on_inputs``); a message with
``weight: 0`` is context, not a target. transformers can return assistant masks only for
templates that carry ``{% generation %}`` markers, which most shipped templates lack, so we
find each assistant turn's character span by rendering the conversation up to that turn and
map spans to tokens through the tokenizer's offsets.
"""

from __future__ import annotations

from dataclasses import dataclass

IGNORE = -100


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    truncated: bool

    @property
    def target_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


def render(tokenizer, messages: list[dict], generation_prompt: bool = False) -> str:
    clean = [{"role": m["role"], "content": m["content"]} for m in messages]
    return tokenizer.apply_chat_template(clean, tokenize=False, add_generation_prompt=generation_prompt)


def assistant_spans(tokenizer, messages: list[dict]) -> tuple[str, list[tuple[int, int]]] | None:
    """(full text, character spans of trainable assistant turns), or None if the template
    does not render conversations as prefixes of each other."""
    full = render(tokenizer, messages)
    spans = []
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant" or msg.get("weight", 1) == 0:
            continue
        before = render(tokenizer, messages[:i], generation_prompt=True) if i else ""
        upto = render(tokenizer, messages[: i + 1])
        if not (upto.startswith(before) and full.startswith(upto)):
            return None
        spans.append((len(before), len(upto)))
    return full, spans


def encode_chat(tokenizer, messages: list[dict], max_length: int, train_on_inputs: bool = False) -> Encoded:
    found = assistant_spans(tokenizer, messages)
    if found is None:
        return _encode_last_turn(tokenizer, messages, max_length, train_on_inputs)
    full, spans = found
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc["input_ids"]
    if train_on_inputs:
        labels = list(ids)
    else:
        labels = [
            tok if any(s <= start < e for s, e in spans) else IGNORE
            for tok, (start, _end) in zip(ids, enc["offset_mapping"])
        ]
    return _truncate(ids, labels, max_length)


def _encode_last_turn(tokenizer, messages, max_length, train_on_inputs) -> Encoded:
    # Fallback for templates that rewrite history: learn the last assistant turn only.
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    prompt_ids = tokenizer(render(tokenizer, messages[:last], True), add_special_tokens=False)["input_ids"]
    ids = tokenizer(render(tokenizer, messages[: last + 1]), add_special_tokens=False)["input_ids"]
    labels = list(ids) if train_on_inputs else [IGNORE] * len(prompt_ids) + ids[len(prompt_ids):]
    return _truncate(ids, labels, max_length)


def _truncate(ids: list[int], labels: list[int], max_length: int) -> Encoded:
    if len(ids) <= max_length:
        return Encoded(ids, labels, False)
    return Encoded(ids[:max_length], labels[:max_length], True)


def encode_prompt(tokenizer, messages: list[dict]) -> list[int]:
    """Token ids of a conversation ready for the model's next (assistant) turn."""
    return tokenizer(render(tokenizer, messages, generation_prompt=True), add_special_tokens=False)["input_ids"]


def render_many(tokenizer, conversations: list[list[dict]], check: int = 32) -> list[str]:
    """Render many conversations with the chat template, fast.

    Jinja rendering costs ~130 µs a row, too slow for 100k-row files. Rows sharing a role
    sequence share a skeleton: we render it once with sentinel contents and fill each row's
    texts in. The first ``check`` rows of each skeleton are also rendered for real; if any
    differs (a template that trims or rewrites content), that skeleton falls back to Jinja.
    """
    skeletons: dict[tuple, tuple[list[str], list[int]] | None] = {}
    checked: dict[tuple, int] = {}
    out: list[str] = []
    for messages in conversations:
        roles = tuple(m["role"] for m in messages)
        if roles not in skeletons:
            skeletons[roles] = _skeleton(tokenizer, roles)
        sk = skeletons[roles]
        if sk is None:
            out.append(render(tokenizer, messages))
            continue
        pieces, order = sk
        text = pieces[0] + "".join(messages[k]["content"] + pieces[n + 1] for n, k in enumerate(order))
        if checked.get(roles, 0) < check:
            checked[roles] = checked.get(roles, 0) + 1
            real = render(tokenizer, messages)
            if real != text:
                skeletons[roles] = None
                text = real
        out.append(text)
    return out


def _skeleton(tokenizer, roles: tuple) -> tuple[list[str], list[int]] | None:
    marks = [f"\u0000{i}\u0000" for i in range(len(roles))]
    try:
        text = render(tokenizer, [{"role": r, "content": m} for r, m in zip(roles, marks)])
    except Exception:  # the template rejects this role order: render rows one by one
        return None
    positions = sorted((text.find(m), i) for i, m in enumerate(marks))
    if any(p < 0 for p, _ in positions) or any(text.count(m) != 1 for m in marks):
        return None
    pieces, order, pos = [], [], 0
    for p, i in positions:
        pieces.append(text[pos:p])
        order.append(i)
        pos = p + len(marks[i])
    pieces.append(text[pos:])
    return pieces, order


def count_tokens(tokenizer, conversations: list[list[dict]], batch: int = 2048) -> list[int]:
    """Length in tokens of each rendered conversation (what training sees)."""
    texts = render_many(tokenizer, conversations)
    counter = WordCounter.of(tokenizer)
    if counter is not None and counter.agrees(texts[:64] + texts[64::max(1, len(texts) // 64)]):
        return counter.count(texts, batch)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    out: list[int] = []
    for start in range(0, len(texts), batch):
        chunk = texts[start:start + batch]
        if backend is not None:
            out.extend(len(e.ids) for e in backend.encode_batch(chunk, add_special_tokens=False))
        else:
            out.extend(len(x) for x in tokenizer(chunk, add_special_tokens=False)["input_ids"])
    return out


# GPT-2's pre-tokenisation pattern: what the tokenizers library's ByteLevel pre-tokenizer
# (use_regex) splits text into before BPE
_BYTE_LEVEL_WORDS = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# the same pattern for ASCII-only text, where letters, digits and spaces are the ASCII ones: the
# standard library's ``re`` runs it 1.5x faster than ``regex`` runs the Unicode one
_ASCII_WORDS = r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+"""


class WordCounter:
    """Token counts of byte-level BPE text without tokenising every row.

    Such a tokenizer (GPT-2, Llama 3, SmolLM, Qwen...) first cuts out its added tokens, splits
    the rest into words with a fixed pattern, and runs BPE on each word alone: a text's length
    is its added tokens plus the sum of its words' lengths. Text data repeats words endlessly,
    so each distinct word is tokenised once (by the tokenizer itself) and remembered; the
    splitting runs in C (``regex``). The tokenizers library spends most of its time tracking
    offsets and alignments that counting does not need: this is 5-8x fewer CPU seconds on
    100k rows. ``agrees`` checks it against the tokenizer on sample rows before it is used.
    """

    def __init__(self, backend, specials: list[str]) -> None:
        import re

        import regex

        self.backend = backend
        self.words = regex.compile(_BYTE_LEVEL_WORDS)
        self.ascii_words = re.compile(_ASCII_WORDS, re.ASCII)
        self.specials = regex.compile("(" + "|".join(map(regex.escape, specials)) + ")") if specials else None
        self.lengths: dict[str, int] = dict.fromkeys(specials, 1)

    @classmethod
    def of(cls, tokenizer) -> "WordCounter | None":
        """A counter for ``tokenizer``, or None when it is not plain byte-level BPE."""
        import json

        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            return None
        spec = json.loads(backend.to_str())
        pre, model = spec.get("pre_tokenizer") or {}, spec.get("model") or {}
        if (spec.get("normalizer") is not None or model.get("type") != "BPE" or pre.get("type") != "ByteLevel"
                or pre.get("add_prefix_space") or not pre.get("use_regex", True) or model.get("dropout")):
            return None
        added = spec.get("added_tokens") or []
        if any(t.get("lstrip") or t.get("rstrip") or t.get("single_word") or t.get("normalized") for t in added):
            return None
        return cls(backend, sorted((t["content"] for t in added), key=len, reverse=True))

    def _split(self, text: str) -> list[str]:
        words = (self.ascii_words if text.isascii() else self.words).findall
        if self.specials is None:
            return words(text)
        out: list[str] = []
        for k, piece in enumerate(self.specials.split(text)):
            if k % 2:
                out.append(piece)  # an added token
            elif piece:
                out.extend(words(piece))
        return out

    def count(self, texts: list[str], batch: int = 2048) -> list[int]:
        out: list[int] = []
        for start in range(0, len(texts), batch):
            split = [self._split(t) for t in texts[start:start + batch]]
            new = list(set().union(*split).difference(self.lengths))
            for lo in range(0, len(new), 4096):
                words = new[lo:lo + 4096]
                found = self.backend.encode_batch(words, add_special_tokens=False)
                self.lengths.update(zip(words, (len(e.ids) for e in found)))
            get = self.lengths.__getitem__
            out.extend(sum(map(get, words)) for words in split)
        return out

    def agrees(self, texts: list[str]) -> bool:
        real = [len(e.ids) for e in self.backend.encode_batch(texts, add_special_tokens=False)]
        return real == self.count(texts)
