"""Forgetting, bias, overfitting and the judge, checked exactly on toys whose numbers we control."""

from __future__ import annotations

import math

import pytest
import torch

from tunelab.evaluate import bias, forgetting, judge, overfit
from tunelab.evaluate.scoring import continuation_logprobs, text_nll


def bigram(table: torch.Tensor):
    """A real causal LM (it runs with a KV cache) whose next-token logits depend only on the
    current token: row t of ``table`` holds the logits after token t, so every
    log-probability is known by hand. One layer whose attention and MLP write nothing, each
    token embedded as a unit-RMS one-hot (the final norm leaves it as is), and an LM head whose
    column t is row t of the table."""
    from transformers import LlamaConfig, LlamaForCausalLM

    n = table.shape[0]
    config = LlamaConfig(vocab_size=n, hidden_size=n, intermediate_size=4, num_hidden_layers=1,
                         num_attention_heads=1, num_key_value_heads=1, head_dim=n, rms_norm_eps=1e-12,
                         tie_word_embeddings=False, pad_token_id=0, bos_token_id=0, eos_token_id=0)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(torch.eye(n) * n ** 0.5)
        model.model.layers[0].self_attn.o_proj.weight.zero_()
        model.model.layers[0].mlp.down_proj.weight.zero_()
        model.lm_head.weight.copy_(table.T / n ** 0.5)
    return model


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
    return bigram(table), WordTokenizer(WORDS), torch.log_softmax(table, -1)


def test_continuation_logprobs_are_exact():
    from tunelab.evaluate.scoring import _whole_sequences

    model, tok, logp = toy()
    pairs = [([0, 1, 3], [4]), ([0, 2], [3, 5]), ([0, 1, 3], [5, 4, 1]), ([0, 2], [1]), ([0, 2], [])]
    expected = [float(logp[3, 4]), float(logp[2, 3] + logp[3, 5]), float(logp[3, 5] + logp[5, 4] + logp[4, 1]),
                float(logp[2, 1]), 0.0]
    # prompts shared by several continuations run once (two prompts per batch, then one each)
    for batch_size in (128, 1):
        assert continuation_logprobs(model, pairs, batch_size=batch_size) == pytest.approx(expected, abs=1e-5)
    assert _whole_sequences(model, pairs) == pytest.approx(expected, abs=1e-5)  # prefix/prompt-tuned models


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
    # several windows per forward, the last one shorter: still every bigram once
    long = [0, 1, 3, 4, 2, 3, 5, 1, 3, 4, 0]
    for window, batch_size in ((3, 8), (3, 1), (4, 2), (256, 8)):
        nll_w, n_w = text_nll(model, long, window=window, batch_size=batch_size)
        assert n_w == len(long) - 1
        assert nll_w == pytest.approx(-sum(float(logp[a, b]) for a, b in zip(long, long[1:])), abs=1e-4)
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


def test_a_prompt_tuned_model_is_scored_on_its_inputs_positions_only():
    """Prompt tuning puts virtual tokens in front of the inputs, and returns logits for them too.
    The toy's next token depends only on the current one, so the virtual tokens change nothing:
    every score must equal the plain model's."""
    from peft import PromptTuningConfig, get_peft_model

    model, tok, logp = toy()
    tuned = get_peft_model(model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3)).eval()
    pairs = [([0, 1, 3], [4]), ([0, 2], [3, 5])]
    assert continuation_logprobs(tuned, pairs) == pytest.approx(
        [float(logp[3, 4]), float(logp[2, 3] + logp[3, 5])], abs=1e-5)
    long = [0, 1, 3, 4, 2, 3, 5, 1, 3, 4, 0]
    nll, n = text_nll(tuned, long, window=4, batch_size=2)
    assert n == len(long) - 1
    assert nll == pytest.approx(-sum(float(logp[a, b]) for a, b in zip(long, long[1:])), abs=1e-4)
