"""The rewards of a GRPO run, composed in config (grpo.rewards): verifiable checks of each answer
and reward-model runs, each with a weight. The run's reward is their weighted sum.

    exact   1 when the answer (or the part `pattern` captures) equals the row's `field`
    regex   1 when `pattern` occurs in the answer
    json    1 when the answer is a JSON object or array
    length  1 when the answer has min..max words, falling off as min/n or max/n outside
    model   the score of a reward-model run (--stage reward)

The checks are a few lines each over the standard library: TRL takes any function of
(prompts, completions, **row columns) as a reward, but ships no such checks.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Callable

from tunelab.config import GrpoSection, RewardSpec

Score = Callable[[list[list[dict]], list[str], list[dict]], list[float]]  # (prompts, answers, row fields)


@dataclass
class Reward:
    name: str  # as logged: rewards/<name>/mean in metrics.jsonl
    weight: float
    score: Score


# ------------------------------------------------------------------------------- the checks
def exact(answer: str, reference: object, pattern: re.Pattern | None = None) -> float:
    """1.0 when the answer (or the first group `pattern` captures in it, or its whole match)
    equals the reference, or one of a list of references, up to surrounding and repeated spaces."""
    if pattern is not None:
        found = pattern.search(answer)
        if found is None:
            return 0.0
        answer = found.group(1) if pattern.groups else found.group(0)
    references = reference if isinstance(reference, list) else [reference]
    return 1.0 if any(_spaces(answer) == _spaces(str(r)) for r in references if r is not None) else 0.0


def _spaces(text: str) -> str:
    return " ".join(text.split())


def matches(answer: str, pattern: re.Pattern) -> float:
    return 1.0 if pattern.search(answer) else 0.0


def is_json(answer: str) -> float:
    try:
        value = json.loads(answer.strip())
    except (ValueError, RecursionError):
        return 0.0
    return 1.0 if isinstance(value, (dict, list)) else 0.0


def length(answer: str, low: int | None, high: int | None) -> float:
    words = len(answer.split())
    if low and words < low:
        return words / low
    if high and words > high:
        return high / words
    return 1.0


# ------------------------------------------------------------------------------- from the config
def specs(section: GrpoSection) -> list[RewardSpec]:
    """grpo.rewards, with grpo.reward_model (--reward-model) as one more model reward of weight 1
    unless a model reward already names that run."""
    out = list(section.rewards)
    if section.reward_model and not any(s.kind == "model" and s.run == section.reward_model for s in out):
        out.append(RewardSpec(kind="model", run=section.reward_model))
    return out


def required_fields(section: GrpoSection) -> tuple[str, ...]:
    """The fields every prompt row must carry (the exact checks' references)."""
    return tuple(dict.fromkeys(s.field for s in specs(section) if s.kind == "exact"))


def build(section: GrpoSection) -> list[Reward]:
    """The rewards of a run; a reward-model run loads here (a wrong folder fails before the run
    is created)."""
    out: list[Reward] = []
    for spec in specs(section):
        name = _unique(f"{spec.kind}_{spec.field}" if spec.kind == "exact" else spec.kind, out)
        out.append(Reward(name, spec.weight, _score(spec)))
    return out


def _unique(name: str, taken: list[Reward]) -> str:
    names = {r.name for r in taken}
    if name not in names:
        return name
    return next(f"{name}_{i}" for i in range(2, len(names) + 2) if f"{name}_{i}" not in names)


def _score(spec: RewardSpec) -> Score:
    pattern = re.compile(spec.pattern) if spec.pattern is not None else None
    if spec.kind == "exact":
        return lambda _p, answers, fields: [exact(a, f.get(spec.field), pattern) for a, f in zip(answers, fields)]
    if spec.kind == "regex":
        return lambda _p, answers, _f: [matches(a, pattern) for a in answers]
    if spec.kind == "json":
        return lambda _p, answers, _f: [is_json(a) for a in answers]
    if spec.kind == "length":
        return lambda _p, answers, _f: [length(a, spec.min, spec.max) for a in answers]
    from tunelab.train.reward import RewardScorer

    scorer = RewardScorer.from_run(spec.run)
    return lambda prompts, answers, _f: scorer.score(prompts, answers)


# ------------------------------------------------------------------------------- use
def total(rewards: list[Reward], prompts: list[list[dict]], answers: list[str], fields: list[dict]) -> list[float]:
    """Each answer's weighted sum of the rewards."""
    sums = [0.0] * len(answers)
    for reward in rewards:
        for i, value in enumerate(reward.score(prompts, answers, fields)):
            sums[i] += reward.weight * value
    return sums


def for_trainer(reward: Reward) -> Callable:
    """The reward as TRL's trainers call one: completions (text, or one assistant message each)
    and the dataset's other columns, here `fields` (each row's fields as JSON)."""

    def score(prompts, completions, fields=None, **_):
        answers = [c[0]["content"] if isinstance(c, list) else c for c in completions]
        rows = [json.loads(f) for f in fields] if fields is not None else [{}] * len(answers)
        return reward.score([list(p) if isinstance(p, list) else [{"role": "user", "content": p}] for p in prompts],
                            answers, rows)

    score.__name__ = reward.name  # TRL logs each reward under its function's name
    return score


@dataclass
class HeldOut:
    """The rewards bound to the held-out rows, for policy.win_rate: ``score`` gives each answer's
    total, ``breakdown`` each reward's mean for the policy's and the reference's answers."""

    rewards: list[Reward]
    fields: list[dict]

    def score(self, prompts: list[list[dict]], answers: list[str]) -> list[float]:
        return total(self.rewards, prompts, answers, self.fields)

    def breakdown(self, prompts: list[list[dict]], policy: list[str], reference: list[str]) -> dict:
        def mean(values: list[float]) -> float:
            return round(sum(values) / max(len(values), 1), 4)

        return {r.name: {"weight": r.weight, "policy": mean(r.score(prompts, policy, self.fields)),
                         "reference": mean(r.score(prompts, reference, self.fields))} for r in self.rewards}
