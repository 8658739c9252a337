"""Batched generation with a KV cache, rows leaving as they finish and new rows joining.

``model.generate`` keeps every row of a batch until the longest one ends, so one rambling
answer makes the other rows pay for its tokens, and its cache grows by concatenation (a full
copy of every layer's keys and values per token). Here a :class:`DecodeBatch` holds rows
decoding together over one cache that grows in blocks; finished rows are dropped between two
steps and waiting prompts are prefilled and merged in (continuous batching, offline). The
serving engine drives the same class, one request per row.

Prompts are left-padded so every row's next token sits in the last column; each row's
positions start at its first real token, so padding never shifts a row's answer.

Why not transformers' own continuous batching (``generate_batch`` / the paged-attention
manager)? It schedules requests across a paged cache but runs every row with one set of
weights, keeps no per-row adapter switch, cannot take a reference answer as a greedy draft
(evaluation scores the reference in the same prefill), does not share one prefilled system
prompt between rows, and targets CUDA kernels: on a CPU its paged attention is slower than
SDPA over a contiguous cache. This loop is small (one class, a few functions), and evaluation,
PPO rollouts and the server all drive it, so one fix reaches all three.
"""

from __future__ import annotations

import collections
import contextlib
from typing import Callable

from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


class _GrowingLayer(DynamicLayer):
    """A cache layer that appends into spare capacity (doubling when full) instead of
    concatenating a fresh copy of the whole layer for every token."""

    def update(self, key_states, value_states, *args, **kwargs):
        import torch

        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
            self.keys, self.values, self._kbuf, self._vbuf = key_states, value_states, None, None
            return self.keys, self.values
        n, add = self.keys.shape[-2], key_states.shape[-2]
        kbuf = getattr(self, "_kbuf", None)
        # the keys may have been replaced from outside (rows selected or merged): start a new buffer
        if (kbuf is None or kbuf.shape[0] != self.keys.shape[0] or kbuf.shape[-2] < n + add
                or kbuf.data_ptr() != self.keys.data_ptr()):
            shape = (*self.keys.shape[:-2], max(2 * n, n + add + 32), self.keys.shape[-1])
            kbuf = torch.empty(shape, dtype=self.keys.dtype, device=self.keys.device)
            vbuf = torch.empty(shape, dtype=self.values.dtype, device=self.values.device)
            kbuf[..., :n, :] = self.keys
            vbuf[..., :n, :] = self.values
            self._kbuf, self._vbuf = kbuf, vbuf
        self._kbuf[..., n:n + add, :] = key_states
        self._vbuf[..., n:n + add, :] = value_states
        self.keys, self.values = self._kbuf[..., :n + add, :], self._vbuf[..., :n + add, :]
        return self.keys, self.values


@contextlib.contextmanager
def contiguous_head(model):
    """With ``logits_to_keep``, the kept hidden states reach the LM head as a strided view, and
    torch's CPU bf16 linear on a strided 3-D input broadcasts the whole vocabulary matrix per
    row (measured 1.8 s vs 9 ms for 32 rows): hand the head a contiguous copy."""
    head = model.get_output_embeddings()
    hook = head.register_forward_pre_hook(lambda _m, args: (args[0].contiguous(), *args[1:])) if head else None
    try:
        yield
    finally:
        if hook:
            hook.remove()


def new_cache() -> DynamicCache:
    cache = DynamicCache()
    cache.layer_class_to_replicate = _GrowingLayer
    return cache


def stop_ids(model, tokenizer) -> set[int]:
    """Token ids that end an answer: the model's generation config and the tokenizer's EOS."""
    value = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(value if isinstance(value, (list, tuple)) else [] if value is None else [value])
    return ids | ({tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set())


class DecodeBatch:
    """Rows decoding together over one KV cache. ``logits`` (rows × vocab, float32) is the
    distribution of each row's next token; ``advance`` feeds one token per row."""

    def __init__(self, model, pad_id: int, forward_ctx: Callable | None = None) -> None:
        self.model, self.pad_id, self.forward_ctx = model, pad_id, forward_ctx
        self.cache = self.mask = self.last_pos = self.logits = self.nll = self.scored = None

    def __len__(self) -> int:
        return 0 if self.mask is None else self.mask.shape[0]

    def _forward(self, keep: int = 1, **inputs):
        import contextlib

        import torch

        ctx = self.forward_ctx() if self.forward_ctx else contextlib.nullcontext()
        with ctx, contiguous_head(self.model), torch.inference_mode():
            return self.model(**inputs, cache=self.cache, use_cache=True, logits_to_keep=keep).logits

    def prefill(self, prompts: list[list[int]], references: list[tuple[list[int], list[int]]] | None = None,
                draft: set[int] | None = None) -> "DecodeBatch":
        """Run the prompts (left-padded). With ``references`` (token ids and labels following
        each prompt, -100 where not scored), the same forward also scores them: the cache is
        then cut back to the prompts, and ``nll``/``scored`` hold each row's summed
        cross-entropy and scored-token count, so teacher-forced loss costs no second pass.

        The tokens every prompt starts with (a chat template's system prompt, a shared
        instruction) run once for the whole batch; the rows continue after them, so a row's
        columns are [shared start | its padding | the rest of its prompt | its reference].

        For greedy decoding, ``draft`` (the stop ids) also takes the reference as a draft answer:
        the same forward shows which leading reference tokens the model would pick itself, so
        those are its answer's first tokens (``drafted``), already in the cache, up to the first
        stop token. A model that learned the task skips most of its decoding steps; the answers
        are the greedy ones either way."""
        import torch

        device = next(self.model.parameters()).device
        n = len(prompts)
        shared = _shared_start(prompts)
        self.cache = new_cache()
        if shared:
            ones = torch.ones((1, shared), dtype=torch.long, device=device)
            self._forward(input_ids=torch.tensor([prompts[0][:shared]], device=device), attention_mask=ones,
                          position_ids=torch.arange(shared, device=device)[None])
            self.cache.batch_repeat_interleave(n)
        width = max(len(p) for p in prompts) - shared
        tail = max((len(ids) for ids, _ in references), default=0) if references else 0
        ids = torch.full((n, width + tail), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, shared + width + tail), dtype=torch.long)
        mask[:, :shared] = 1
        labels = torch.full((n, tail), -100, dtype=torch.long)
        for r, p in enumerate(prompts):
            rest = p[shared:]
            ids[r, width - len(rest):width] = torch.tensor(rest)
            mask[r, shared + width - len(rest):shared + width] = 1
            if tail and references[r][0]:
                ref_ids, ref_labels = references[r]
                ids[r, width:width + len(ref_ids)] = torch.tensor(ref_ids)
                mask[r, shared + width:shared + width + len(ref_ids)] = 1
                labels[r, :len(ref_labels)] = torch.tensor(ref_labels)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = self._forward(keep=tail + 1, input_ids=ids.to(device), attention_mask=mask.to(device),
                               position_ids=positions[:, shared:].to(device))
        if references is not None:
            self.nll, self.scored = torch.zeros(n), torch.zeros(n, dtype=torch.long)
        if tail:
            labels = labels.to(device)
            for g in range(0, n, 8):  # cross-entropy as logsumexp - picked logit, in float32, a few rows at a time
                chunk, lab = logits[g:g + 8, :-1], labels[g:g + 8]
                picked = chunk.gather(-1, lab.clamp(min=0)[..., None]).squeeze(-1).float()
                nll = torch.logsumexp(chunk.float(), -1) - picked
                self.nll[g:g + 8] = torch.where(lab != -100, nll, 0.0).sum(-1).cpu()
            self.scored = (labels != -100).sum(-1).cpu()
        # each row's answer so far: the reference tokens its greedy choice agrees with (none
        # unless ``draft``); the cache keeps them and the next token comes after them
        self.drafted = [[] for _ in prompts]
        if tail and draft is not None:
            choice = logits.argmax(-1).cpu()  # choice[r, j]: the model's token after the prompt + ref[:j]
            for r, (ref_ids, _) in enumerate(references):
                k = 0
                while k < len(ref_ids) and int(choice[r, k]) == ref_ids[k]:
                    k += 1
                    if ref_ids[k - 1] in draft:
                        break  # the answer ended there
                self.drafted[r] = list(ref_ids[:k])
        taken = torch.tensor([len(d) for d in self.drafted])
        end, extra = shared + width, int(taken.max())
        if tail > extra:
            self.cache.crop(-(tail - extra))
        rows = torch.arange(n)
        self.logits = logits[rows, taken.to(logits.device)].float()
        mask = mask[:, :end + extra]
        mask[:, end:] = (torch.arange(extra)[None] < taken[:, None]).long()  # a row's unaccepted tokens: masked
        self.mask, self.last_pos = mask.to(device), positions[rows, end - 1 + taken].to(device)
        return self

    def merge(self, other: "DecodeBatch") -> None:
        """Append ``other``'s rows, left-padding the shorter cache so both share one length."""
        import torch
        import torch.nn.functional as F

        la, lb = self.mask.shape[1], other.mask.shape[1]
        width = max(la, lb)
        for mine, theirs in zip(self.cache.layers, other.cache.layers):
            for attr in ("keys", "values"):
                a = F.pad(getattr(mine, attr), (0, 0, width - la, 0))
                b = F.pad(getattr(theirs, attr), (0, 0, width - lb, 0))
                setattr(mine, attr, torch.cat([a, b], dim=0))
        self.mask = torch.cat([F.pad(self.mask, (width - la, 0)), F.pad(other.mask, (width - lb, 0))], dim=0)
        self.last_pos = torch.cat([self.last_pos, other.last_pos])
        self.logits = torch.cat([self.logits, other.logits])

    def keep(self, rows: list[int]) -> None:
        """Keep only these rows (in this order)."""
        import torch

        index = torch.tensor(rows, device=self.mask.device)
        self.cache.batch_select_indices(index)
        self.mask, self.last_pos, self.logits = self.mask[index], self.last_pos[index], self.logits[index]
        # columns that are padding in every remaining row (the rows that needed them left):
        # drop them, or a long-lived batch's cache would keep every column it ever had
        used = self.mask.any(0).nonzero()
        first = int(used[0]) if len(used) else 0
        if first:
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[..., first:, :], layer.values[..., first:, :]
            self.mask = self.mask[:, first:]

    def advance(self, tokens) -> None:
        """Feed one token per row (a 1-D LongTensor) and compute the next logits."""
        self.logits = self.extend(tokens[:, None])[:, -1].float()

    def extend(self, ids):
        """Feed ``ids`` (rows x k) after every row and return the logits at those k positions
        (rows x k x vocab). Rows shorter than k may be padded at the end: later columns never
        change an earlier column's logits, but the batch then only serves for scoring."""
        import torch

        k = ids.shape[1]
        self.mask = torch.cat([self.mask, self.mask.new_ones((len(self), k))], dim=1)
        positions = self.last_pos[:, None] + torch.arange(1, k + 1, device=self.mask.device)
        self.last_pos = positions[:, -1]
        return self._forward(keep=k, input_ids=ids.to(self.mask.device), attention_mask=self.mask,
                             position_ids=positions)


def _shared_start(prompts: list[list[int]]) -> int:
    """How many leading tokens to run once for all ``prompts``: their common start, short of
    each prompt's last token (whose logits are each row's own), and only when running it once
    saves more than the extra forward costs."""
    if len(prompts) < 2:
        return 0
    first, n = prompts[0], min(len(p) for p in prompts) - 1
    for p in prompts[1:]:
        n = next((i for i in range(n) if p[i] != first[i]), n)
    return n if n * (len(prompts) - 1) >= 64 else 0


def pick(logits, temperature: float, top_p: float, generator=None):
    """One token per row: greedy at temperature 0, else nucleus sampling."""
    import torch

    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, order = torch.sort(probs, descending=True, dim=-1)
        sorted_p = sorted_p * (sorted_p.cumsum(-1) - sorted_p < top_p)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    # the generator lives on the CPU: draw there, whatever device the logits are on
    probs = (probs / probs.sum(-1, keepdim=True)).cpu()
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1).to(logits.device)


def generate(
    model,
    tokenizer,
    prompts: list[list[int]],
    *,
    max_new_tokens: int = 128,
    batch_size: int = 16,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = 0,
    progress: Callable[[int], None] | None = None,
) -> list[str]:
    """Answers to ``prompts`` (token ids) in the caller's order.

    Prompts are taken shortest first so each prefill pads little; when half the rows have
    finished, the next prompts are prefilled and join the running rows.
    """
    if is_prompt_learning(model):
        return _generate_whole_batches(model, tokenizer, prompts, max_new_tokens=max_new_tokens,
                                       batch_size=batch_size, temperature=temperature, top_p=top_p,
                                       seed=seed, progress=progress)
    answers = _decode(model, tokenizer, prompts, None, max_new_tokens, batch_size, temperature, top_p, seed,
                      progress)[0]
    return [to_text(tokenizer, ids, stop_ids(model, tokenizer)) for ids in answers]


def generate_ids(model, tokenizer, prompts: list[list[int]], *, max_new_tokens: int = 128, batch_size: int = 16,
                 temperature: float = 1.0, top_p: float = 1.0, seed: int = 0) -> list[list[int]]:
    """Answer token ids, each ending with its stop token unless it ran out of budget (what a
    policy-gradient update needs: the stop token is an action too)."""
    return _decode(model, tokenizer, prompts, None, max_new_tokens, batch_size, temperature, top_p, seed, None)[0]


def to_text(tokenizer, ids: list[int], stops: set[int]) -> str:
    if ids and ids[-1] in stops:
        ids = ids[:-1]
    return tokenizer.decode(ids, skip_special_tokens=True).strip()


def generate_and_score(model, tokenizer, prompts: list[list[int]], references: list[tuple[list[int], list[int]]],
                       *, max_new_tokens: int = 128, batch_size: int = 16,
                       progress: Callable[[int], None] | None = None) -> tuple[list[str], float]:
    """Greedy answers to ``prompts`` and the mean cross-entropy of the reference continuations
    (ids, labels) that follow them, from the same prefill."""
    answers, nll, count = _decode(model, tokenizer, prompts, references, max_new_tokens, batch_size, 0.0, 1.0, 0,
                                  progress)
    stops = stop_ids(model, tokenizer)
    return [to_text(tokenizer, ids, stops) for ids in answers], nll / max(count, 1)


def _decode(model, tokenizer, prompts, references, max_new_tokens, batch_size, temperature, top_p, seed, progress):
    import torch

    waiting = collections.deque(sorted(range(len(prompts)), key=lambda i: len(prompts[i])))
    out: list[list[int]] = [[] for _ in prompts]  # each answer's tokens, its stop token included
    nll, count = 0.0, 0
    stops = stop_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    vocab = int(getattr(getattr(model, "config", None), "vocab_size", 0) or 0)
    gen = torch.Generator()
    gen.manual_seed(seed) if seed is not None else gen.seed()  # None: a fresh draw each call
    was_training = model.training
    model.eval()
    batch: DecodeBatch | None = None
    rows: list[int] = []  # prompt index of each batch row
    tokens: list[list[int]] = []
    try:
        while waiting or rows:
            if waiting and len(rows) <= batch_size // 2:
                take = _next_prefill(waiting, prompts, references, batch_size - len(rows), vocab)
                new = DecodeBatch(model, pad).prefill([prompts[i] for i in take],
                                                      [references[i] for i in take] if references else None,
                                                      draft=stops if references and temperature <= 0 else None)
                if references:
                    nll += float(new.nll.sum())
                    count += int(new.scored.sum())
                if batch is None or not rows:
                    batch = new
                else:
                    batch.merge(new)
                rows += take
                tokens += new.drafted
                # answers the draft already finished leave before any step
                done = [r for r, t in enumerate(tokens) if t and (t[-1] in stops or len(t) >= max_new_tokens)]
                if done:
                    for r in done:
                        out[rows[r]] = tokens[r][:max_new_tokens]
                    if progress:
                        progress(len(done))
                    keep = sorted(set(range(len(rows))) - set(done))
                    rows, tokens = [rows[r] for r in keep], [tokens[r] for r in keep]
                    if not keep:
                        continue
                    batch.keep(keep)
            nxt = pick(batch.logits, temperature, top_p, gen).cpu()
            keep: list[int] = []
            for r, t in enumerate(nxt.tolist()):
                tokens[r].append(t)
                if t in stops or len(tokens[r]) >= max_new_tokens:
                    out[rows[r]] = tokens[r]
                else:
                    keep.append(r)
            if progress and len(keep) < len(rows):
                progress(len(rows) - len(keep))
            if len(keep) < len(rows):
                rows, tokens = [rows[r] for r in keep], [tokens[r] for r in keep]
                if not keep:
                    continue
                batch.keep(keep)
                nxt = nxt[keep]
            batch.advance(nxt)
    finally:
        model.train(was_training)
    return out, nll, count


# padded prompt + reference tokens one prefill may hold, and the logits it may keep (rows x
# (reference length + 1) x vocabulary: 256M values, 512 MB in bf16), so long prompts and long
# references or a large vocabulary get fewer rows per prefill
PREFILL_CELLS = 16384
PREFILL_LOGITS = 1 << 28


def _next_prefill(waiting: collections.deque, prompts, references, room: int, vocab: int = 0) -> list[int]:
    """Take the next prompts to prefill: at most ``room``, and no more than fit PREFILL_CELLS
    and PREFILL_LOGITS once padded to the longest prompt and reference among them (always at
    least one)."""
    take: list[int] = []
    width = tail = 0
    while waiting and len(take) < room:
        i = waiting[0]
        w, t = max(width, len(prompts[i])), max(tail, len(references[i][0]) if references else 0)
        rows = len(take) + 1
        if take and (rows * (w + t) > PREFILL_CELLS or rows * (t + 1) * vocab > PREFILL_LOGITS):
            break
        take.append(waiting.popleft())
        width, tail = w, t
    return take


def is_prompt_learning(model) -> bool:
    """Prefix and prompt tuning rewrite the cache (or the inputs) on every forward, which only
    PEFT's own ``generate`` knows how to drive."""
    return bool(getattr(getattr(model, "active_peft_config", None), "is_prompt_learning", False))


def _generate_whole_batches(model, tokenizer, prompts, *, max_new_tokens, batch_size, temperature, top_p,
                            seed, progress) -> list[str]:
    """``model.generate`` on length-sorted, left-padded batches (for prompt-learning adapters)."""
    import torch

    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[str] = [""] * len(prompts)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = next(model.parameters()).device
    sampling = temperature > 0
    if sampling and seed is not None:
        torch.manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            width = max(len(prompts[i]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                ids[row, width - len(prompts[i]):] = torch.tensor(prompts[i])
                mask[row, width - len(prompts[i]):] = 1
            with torch.inference_mode():
                gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                     max_new_tokens=max_new_tokens, do_sample=sampling,
                                     temperature=temperature if sampling else None,
                                     top_p=top_p if sampling else None, top_k=None, pad_token_id=pad)
            for row, i in enumerate(idx):
                out[i] = tokenizer.decode(gen[row, width:], skip_special_tokens=True).strip()
            if progress:
                progress(len(idx))
    finally:
        model.train(was_training)
    return out


def answer_chat(model, tokenizer, messages: list[dict], max_new_tokens: int = 256, temperature: float = 0.0,
                top_p: float = 1.0) -> str:
    """One assistant answer to a conversation (``temperature`` 0: greedy; else a fresh seed)."""
    from tunelab.data.tokens import encode_prompt

    prompt = encode_prompt(tokenizer, messages)
    return generate(model, tokenizer, [prompt], max_new_tokens=max_new_tokens, seed=None, batch_size=1,
                    temperature=temperature, top_p=top_p)[0]
