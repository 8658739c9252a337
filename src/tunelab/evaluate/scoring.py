"""Log-probabilities of continuations and negative log-likelihood of text, batched."""

from __future__ import annotations


def continuation_logprobs(model, pairs: list[tuple[list[int], list[int]]], batch_size: int = 16) -> list[float]:
    """Sum of log P(continuation tokens | prompt tokens) for each (prompt_ids, continuation_ids)."""
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
            logp = torch.log_softmax(model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float(), -1)
        for r, (p, c) in enumerate(chunk):
            positions = torch.arange(len(p) - 1, len(p) + len(c) - 1)
            out.append(float(logp[r, positions, torch.tensor(c)].sum()))
    model.train(was_training)
    return out


def text_nll(model, ids: list[int], window: int = 256) -> tuple[float, int]:
    """Total negative log-likelihood of ``ids`` (every token after the first), in windows."""
    import torch

    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    for start in range(0, max(len(ids) - 1, 1), window):
        seq = ids[start:start + window + 1]
        if len(seq) < 2:
            break
        x = torch.tensor([seq], device=device)
        with torch.inference_mode():
            logp = torch.log_softmax(model(input_ids=x).logits.float()[0, :-1], -1)
        total -= float(logp[torch.arange(len(seq) - 1), x[0, 1:]].sum())
        count += len(seq) - 1
    model.train(was_training)
    return total, count
