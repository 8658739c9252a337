"""Forgetting, bias, overfitting and the judge, checked exactly on toys whose numbers we control."""

from __future__ import annotations

import math

import pytest
import torch

from tunelab.evaluate import bias, forgetting, judge, overfit
from tunelab.evaluate.scoring import continuation_logprobs, text_nll


class Bigram(torch.nn.Module):
    """A 'language model' whose next-token log-probs depend only on the current token: row t of
    ``table`` holds the logits after token t, so every log-probability is known by hand."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(table, requires_grad=False)

    def forward(self, input_ids, attention_mask=None):
        return type("Out", (), {"logits": self.table[input_ids]})()


class WordTokenizer:
    def __init__(self, words: list[str]) -> None:
        self.ids = {w: i for i, w in enumerate(words)}

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        import re

        return {"input_ids": [self.ids[w] for w in re.findall(r" ?\w+", text)]}


WORDS = ["The", " man", " woman", " was", " kind", " rude"]


def toy():
    torch.manual_seed(0)
    table = torch.randn(len(WORDS), len(WORDS))
    return Bigram(table), WordTokenizer(WORDS), torch.log_softmax(table, -1)


def test_continuation_logprobs_are_exact():
    model, tok, logp = toy()
    got = continuation_logprobs(model, [([0, 1, 3], [4]), ([0, 2], [3, 5])])
    assert got[0] == pytest.approx(float(logp[3, 4]), abs=1e-6)
    assert got[1] == pytest.approx(float(logp[2, 3] + logp[3, 5]), abs=1e-6)


def test_bias_scores_and_gap_are_exact():
    model, tok, logp = toy()
    spec = {"templates": ["The{group} was"], "positive": [" kind"], "negative": [" rude"],
            "axes": {"gender": [" man", " woman"]}}
    out = bias.scores(model, tok, spec)
    # after "... was" the next token depends only on " was": both groups score the same
    expected = float(logp[3, 4] - logp[3, 5])
    assert out["gender"]["groups"] == {" man": pytest.approx(expected, abs=1e-4),
                                       " woman": pytest.approx(expected, abs=1e-4)}
    assert out["gender"]["gap"] == pytest.approx(0.0, abs=1e-4)
    spec2 = {**spec, "templates": ["The{group}"], "positive": [" kind"], "negative": [" rude"]}
    out2 = bias.scores(model, tok, spec2)
    man, woman = float(logp[1, 4] - logp[1, 5]), float(logp[2, 4] - logp[2, 5])
    assert out2["gender"]["gap"] == pytest.approx(abs(man - woman), abs=1e-4)
    verdict = bias.compare({"gender": {"gap": 0.1}}, {"gender": {"gap": 0.5}}, threshold=0.25)
    assert verdict["amplified"] == ["gender"] and verdict["axes"]["gender"]["change"] == pytest.approx(0.4)
    assert bias.compare({"gender": {"gap": 0.1}}, {"gender": {"gap": 0.3}}, threshold=0.25)["amplified"] == []


def test_prose_perplexity_is_exact():
    model, tok, logp = toy()
    ids = [0, 1, 3, 4]
    nll, n = text_nll(model, ids)
    assert n == 3 and nll == pytest.approx(-float(logp[0, 1] + logp[1, 3] + logp[3, 4]), abs=1e-5)
    ppl = forgetting.prose_perplexity(model, tok, "The man was kind")
    assert ppl == pytest.approx(math.exp(nll / 3), rel=1e-5)


def test_qa_accuracy_and_forgetting_delta_are_exact():
    rows = [{"domain": "geo", "question": "Capital of France?", "answer": "Paris"},
            {"domain": "geo", "question": "Capital of Peru?", "answer": "Lima"},
            {"domain": "math", "question": "2+2?", "answer": "4"},
            {"domain": "math", "question": "3+3?", "answer": "6"}]
    model, tok, _ = toy()
    answers = {"Capital of France?": "It is Paris.", "Capital of Peru?": "Cusco", "2+2?": "4", "3+3?": "The answer is 7"}
    out = forgetting.side(model, tok, lambda qs: [answers[q] for q in qs], rows=rows, prose="The man was kind")
    assert out["qa_accuracy"] == 0.5 and out["qa_by_domain"] == {"geo": 0.5, "math": 0.5}
    d = forgetting.delta({"qa_accuracy": 0.75, "prose_perplexity": 10.0}, {"qa_accuracy": 0.5, "prose_perplexity": 12.5})
    assert d == {"qa_accuracy_drop": 0.25, "prose_perplexity_ratio": 1.25}
    assert forgetting.qa_correct("Yes, 12.", "12") and not forgetting.qa_correct("112", "12")
    assert len(forgetting.probe_questions()) >= 250 and len(forgetting.probe_prose().split()) >= 2000


def test_overfitting_names_the_step_where_it_began():
    metrics = [{"step": 1, "loss": 2.0}, {"step": 2, "eval_loss": 1.8}, {"step": 3, "loss": 1.0},
               {"step": 4, "eval_loss": 1.2}, {"step": 5, "loss": 0.5}, {"step": 6, "eval_loss": 1.4},
               {"step": 7, "loss": 0.1}, {"step": 8, "eval_loss": 1.9}]
    out = overfit.analyse(metrics)
    assert out["flag"] and out["best_step"] == 4 and out["began_at_step"] == 4
    healthy = [{"step": 1, "loss": 2.0}, {"step": 2, "eval_loss": 1.8}, {"step": 3, "loss": 1.5},
               {"step": 4, "eval_loss": 1.4}]
    assert not overfit.analyse(healthy)["flag"]


def test_judge_win_rate_cancels_position():
    def ask(prompt: str) -> str:
        a = prompt.split("Answer A:\n")[1].split("\n")[0]
        return "A" if a == "TUNED" else "B"

    out = judge.win_rate(ask, ["q"] * 10, ["r"] * 10, ["BASE"] * 10, ["TUNED"] * 10, seed=3)
    assert out["tuned_win_rate"] == 1.0 and out["wins"] == 10
    always_a = judge.win_rate(lambda p: "A", ["q"] * 200, ["r"] * 200, ["x"] * 200, ["y"] * 200, seed=1)
    assert 0.4 < always_a["tuned_win_rate"] < 0.6  # a judge that always says A favours no one
    assert judge.verdict("B.") == "B" and judge.verdict("Both are fine") is None
