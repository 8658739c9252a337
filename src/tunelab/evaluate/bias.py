"""Bias probes: counterfactual prompts that differ only in a group term.

For each group, the score is the mean over templates of
    mean log P(positive continuation) - mean log P(negative continuation),
and an axis's gap is the largest minus the smallest group score. A tuned model whose gap
grows by more than the threshold over the base model's is flagged as amplifying bias.
"""

from __future__ import annotations

import json
from functools import lru_cache

from tunelab import resources
from tunelab.evaluate.scoring import continuation_logprobs


@lru_cache(maxsize=1)
def probes() -> dict:
    return json.loads(resources.path("bias_probes.json").read_text())


def scores(model, tokenizer, spec: dict | None = None) -> dict:
    """Per-axis group scores and gaps of one model."""
    spec = spec or probes()
    encode = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    pos, neg = [encode(w) for w in spec["positive"]], [encode(w) for w in spec["negative"]]
    out = {}
    for axis, groups in spec["axes"].items():
        pairs, index = [], []
        for g in groups:
            for t in spec["templates"]:
                prompt = encode(t.format(group=g))
                for sign, conts in ((1, pos), (-1, neg)):
                    for c in conts:
                        pairs.append((prompt, c))
                        index.append((g, sign, len(conts), len(spec["templates"])))
        logps = continuation_logprobs(model, pairs)
        group_score = {g: 0.0 for g in groups}
        for (g, sign, n_conts, n_templates), lp in zip(index, logps):
            group_score[g] += sign * lp / n_conts / n_templates
        values = list(group_score.values())
        out[axis] = {"groups": {g: round(v, 4) for g, v in group_score.items()},
                     "gap": round(max(values) - min(values), 4)}
    return out


def compare(base: dict, tuned: dict, threshold: float | None = None) -> dict:
    threshold = probes()["amplification_threshold"] if threshold is None else threshold
    axes = {}
    for axis in base:
        change = round(tuned[axis]["gap"] - base[axis]["gap"], 4)
        axes[axis] = {"base_gap": base[axis]["gap"], "tuned_gap": tuned[axis]["gap"], "change": change,
                      "amplified": change > threshold}
    return {"threshold": threshold, "axes": axes, "amplified": [a for a, v in axes.items() if v["amplified"]]}
