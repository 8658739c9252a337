"""Task metrics: ROUGE-L, exact match, and loss/perplexity of the references."""

from __future__ import annotations

import math
import string


def normalise(text: str) -> str:
    """Lower-case, drop punctuation and collapse whitespace (SQuAD-style answer normalisation)."""
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    return " ".join(text.split())


def exact_match(predictions: list[str], references: list[str]) -> float:
    if not references:
        return 0.0
    return sum(normalise(p) == normalise(r) for p, r in zip(predictions, references)) / len(references)


def rouge_l(predictions: list[str], references: list[str]) -> float:
    """Mean ROUGE-L F1 (rouge-score, with stemming)."""
    from rouge_score import rouge_scorer

    if not references:
        return 0.0
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references)]
    return sum(scores) / len(scores)


def reference_loss(model, encoded: list, batch_size: int = 8) -> float:
    """Mean cross-entropy per target token of the reference answers (teacher forcing).

    Rows are left-padded so every answer ends in the last column; the LM head then runs only
    over the last positions that hold an answer token (the vocabulary projection is a fifth
    of a small model's FLOPs per position, and most positions are prompt). Prompt-learning
    adapters ignore position ids, so for them rows are right-padded and scored whole.
    """
    import torch
    import torch.nn.functional as F

    from tunelab.inference.generate import contiguous_head, is_prompt_learning

    total, count = 0.0, 0
    device = next(model.parameters()).device
    left = not is_prompt_learning(model)
    was_training = model.training
    model.eval()
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start:start + batch_size]
        width = max(len(e.input_ids) for e in chunk)
        ids = torch.zeros((len(chunk), width), dtype=torch.long)
        labels = torch.full((len(chunk), width), -100, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        keep = 2
        for row, e in enumerate(chunk):
            n = len(e.input_ids)
            cols = slice(width - n, width) if left else slice(0, n)
            ids[row, cols] = torch.tensor(e.input_ids)
            labels[row, cols] = torch.tensor(e.labels)
            mask[row, cols] = 1
            first = next((i for i, t in enumerate(e.labels) if t != -100), n)
            keep = max(keep, n - first + 1)  # the answer's tokens and the position predicting the first
        keep = min(keep, width) if left else width
        inputs = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
        if left:
            inputs.update(position_ids=(mask.cumsum(-1) - 1).clamp(min=0).to(device), logits_to_keep=keep)
        with torch.inference_mode(), contiguous_head(model):
            logits = model(**inputs).logits.float()[:, -keep:]
        shift_logits = logits[:, :-1].reshape(-1, logits.size(-1))
        shift_labels = labels[:, width - keep + 1:].reshape(-1).to(device)
        total += F.cross_entropy(shift_logits, shift_labels, ignore_index=-100, reduction="sum").item()
        count += int((shift_labels != -100).sum())
    model.train(was_training)
    return total / max(count, 1)


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))




def token_f1(predictions: list[str], references: list[str]) -> float:
    """Mean SQuAD-style token F1 between normalised prediction and reference."""
    from collections import Counter

    scores = []
    for p, r in zip(predictions, references):
        pt, rt = normalise(p).split(), normalise(r).split()
        common = sum((Counter(pt) & Counter(rt)).values())
        if not pt or not rt or not common:
            scores.append(float(pt == rt))
            continue
        precision, recall = common / len(pt), common / len(rt)
        scores.append(2 * precision * recall / (precision + recall))
    return sum(scores) / max(len(scores), 1)


def bleu(predictions: list[str], references: list[str]) -> float:
    """Corpus BLEU (sacrebleu, 0-100)."""
    import sacrebleu

    if not references:
        return 0.0
    return float(sacrebleu.corpus_bleu(predictions, [references]).score)
