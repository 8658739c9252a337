"""Log-probabilities of continuations and negative log-likelihood of text, batched."""

from __future__ import annotations


def continuation_logprobs(model, pairs: list[tuple[list[int], list[int]]], batch_size: int = 128) -> list[float]:
    """Sum of log P(continuation tokens | prompt tokens) for each (prompt_ids, continuation_ids).

    Probes ask many continuations of one prompt (every positive and negative word after each
    template): each distinct prompt runs once, its cache is copied for its continuations, and
    only the continuation tokens run after it (bias probes: 4x fewer tokens than whole rows)."""
    from tunelab.inference.generate import is_prompt_learning

    if is_prompt_learning(model):  # the adapter owns the cache: score whole sequences
        return _whole_sequences(model, pairs)
    return _after_shared_prompts(model, pairs, batch_size)


def _after_shared_prompts(model, pairs, batch_size: int) -> list[float]:
    import torch

    from tunelab.inference.generate import DecodeBatch

    by_prompt: dict[tuple[int, ...], list[int]] = {}
    for i, (prompt, _) in enumerate(pairs):
        by_prompt.setdefault(tuple(prompt), []).append(i)
    prompts = sorted(by_prompt, key=len)
    out = [0.0] * len(pairs)
    was_training = model.training
    model.eval()
    try:
        start = 0
        while start < len(prompts):
            chunk, rows = [], 0  # prompts whose continuations together fill about one batch
            while start < len(prompts) and (not chunk or rows + len(by_prompt[prompts[start]]) <= batch_size):
                chunk.append(prompts[start])
                rows += len(by_prompt[prompts[start]])
                start += 1
            batch = DecodeBatch(model, 0).prefill([list(p) for p in chunk])
            first = torch.log_softmax(batch.logits, -1)  # each prompt's next-token distribution
            rows_of = [(k, i) for k, p in enumerate(chunk) for i in by_prompt[p]]
            conts = [pairs[i][1] for _, i in rows_of]
            scores = [float(first[k, c[0]]) if c else 0.0 for (k, _), c in zip(rows_of, conts)]
            more = max(len(c) for c in conts) - 1
            if more > 0:  # feed all but each continuation's last token; shorter ones are padded at the end
                batch.keep([k for k, _ in rows_of])
                ids = torch.zeros((len(conts), more), dtype=torch.long)
                for r, c in enumerate(conts):
                    if len(c) > 1:
                        ids[r, :len(c) - 1] = torch.tensor(c[:-1])
                logp = torch.log_softmax(batch.extend(ids).float(), -1)
                for r, c in enumerate(conts):
                    for j, t in enumerate(c[1:]):
                        scores[r] += float(logp[r, j, t])
            for (_, i), value in zip(rows_of, scores):
                out[i] = value
    finally:
        model.train(was_training)
    return out


def _whole_sequences(model, pairs, batch_size: int = 16) -> list[float]:
    """Each pair scored as one right-padded sequence. A prompt-tuned model returns logits for its
    virtual tokens too, in front of the inputs': only the last ``width`` positions are the inputs'."""
    import torch

    out: list[float] = []
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        width = max(len(p) + len(c) for p, c in chunk)
        ids = torch.zeros((len(chunk), width), dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for r, (p, c) in enumerate(chunk):
            seq = p + c
            ids[r, :len(seq)] = torch.tensor(seq)
            mask[r, :len(seq)] = 1
        with torch.inference_mode():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits[:, -width:]
            logp = torch.log_softmax(logits.float(), -1)
        for r, (p, c) in enumerate(chunk):
            positions = torch.arange(len(p) - 1, len(p) + len(c) - 1)
            out.append(float(logp[r, positions, torch.tensor(c, dtype=torch.long)].sum()))
    model.train(was_training)
    return out


def text_nll(model, ids: list[int], window: int = 256, batch_size: int = 8) -> tuple[float, int]:
    """Total negative log-likelihood of ``ids`` (every token after the first), in windows of
    ``window`` predicted tokens, several windows per forward. (A prompt-tuned model's logits for
    its virtual tokens, in front, are left out.)"""
    import torch
    import torch.nn.functional as F

    windows = [ids[start:start + window + 1] for start in range(0, max(len(ids) - 1, 1), window)]
    windows = [w for w in windows if len(w) >= 2]
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for start in range(0, len(windows), batch_size):
            chunk = windows[start:start + batch_size]
            width = max(len(w) for w in chunk)
            x = torch.zeros((len(chunk), width), dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            labels = torch.full((len(chunk), width - 1), -100, dtype=torch.long)
            for r, w in enumerate(chunk):  # only the last window can be short: padded at its end
                x[r, :len(w)], mask[r, :len(w)] = torch.tensor(w), 1
                labels[r, :len(w) - 1] = torch.tensor(w[1:])
            with torch.inference_mode():
                logits = model(input_ids=x.to(device), attention_mask=mask.to(device)).logits[:, -width:-1]
                for r in range(len(chunk)):  # float32 logits one window at a time
                    total += float(F.cross_entropy(logits[r].float(), labels[r].to(device), ignore_index=-100,
                                                   reduction="sum"))
            count += int((labels != -100).sum())
    finally:
        model.train(was_training)
    return total, count
