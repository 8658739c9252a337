"""PPO's pieces against values worked out by hand, and a short run that learns a toy reward."""

from __future__ import annotations

import math

import pytest
import torch

from tunelab.train import ppo_loop as ppo


def test_gae_on_a_fixed_reward_sequence():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 2.0, 0.0]])
    values = torch.tensor([[0.5, 0.6, 0.7], [1.0, 1.0, 9.0]])  # 9.0 sits on padding: must not count
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    adv, ret = ppo.gae(rewards, values, mask, gamma=1.0, lam=0.9)
    # row 1: d2 = 1 - 0.7 = 0.3; d1 = 0.7 - 0.6 = 0.1, A1 = 0.1 + 0.9*0.3; d0 = 0.1, A0 = 0.1 + 0.9*A1
    assert adv[0].tolist() == pytest.approx([0.433, 0.37, 0.3])
    assert ret[0].tolist() == pytest.approx([0.933, 0.97, 1.0])
    # row 2 ends at t=1: d1 = 2 - 1 = 1; d0 = 0 + 1 - 1 = 0, A0 = 0.9
    assert adv[1].tolist() == pytest.approx([0.9, 1.0, 0.0])
    assert ret[1].tolist() == pytest.approx([1.9, 2.0, 0.0])


def test_gae_discounts():
    adv, _ = ppo.gae(torch.tensor([[0.0, 1.0]]), torch.zeros(1, 2), torch.ones(1, 2), gamma=0.5, lam=1.0)
    assert adv[0].tolist() == pytest.approx([0.5, 1.0])


def test_clipped_policy_loss():
    old = torch.zeros(1, 3)
    new = torch.log(torch.tensor([[1.5, 0.5, 1.1]]))
    adv = torch.tensor([[1.0, -1.0, 2.0]])
    loss, clipfrac = ppo.policy_loss(new, old, adv, torch.ones(1, 3), clip=0.2)
    # token 1: max(-1.5, -1.2) = -1.2 (clipped); token 2: max(0.5, 0.8) = 0.8 (clipped);
    # token 3: ratio 1.1 is inside the clip range: -2.2
    assert loss.item() == pytest.approx((-1.2 + 0.8 - 2.2) / 3)
    assert clipfrac.item() == pytest.approx(2 / 3)
    # padding does not count
    loss, _ = ppo.policy_loss(new, old, adv, torch.tensor([[1.0, 0.0, 0.0]]), clip=0.2)
    assert loss.item() == pytest.approx(-1.2)


def test_value_loss_is_clipped_like_the_policy():
    loss = ppo.value_loss(torch.tensor([[1.0]]), torch.tensor([[0.5]]), torch.tensor([[2.0]]), torch.ones(1, 1), 0.2)
    assert loss.item() == pytest.approx(0.5 * (0.7 - 2.0) ** 2)  # the clipped value (0.7) is further off


def test_kl_penalty_on_every_token_and_score_on_the_last():
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    rewards = ppo.token_rewards(torch.tensor([1.0, -2.0]), kl, mask, kl_coef=0.5)
    assert rewards.tolist() == [pytest.approx([-0.05, 0.9, 0.0]), pytest.approx([-2.2, 0.0, 0.0])]


def test_kl_is_zero_against_itself_and_logprobs_are_exact(tiny_model):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32),
                           LoraConfig(r=4, target_modules="all-linear")).eval()
    prompts, answers = [[5, 6, 7], [8]], [[9, 10], [11, 12, 13]]
    with torch.no_grad():
        s = ppo.score_answers(model, None, prompts, answers, tok.pad_token_id)
        with ppo.reference(model, None):
            r = ppo.score_answers(model, None, prompts, answers, tok.pad_token_id)
        assert torch.equal(s.logprobs, r.logprobs)  # LoRA's B starts at zero
        plain = torch.log_softmax(model(input_ids=torch.tensor([[8, 11, 12]])).logits[0].float(), -1)
    assert s.mask.tolist() == [[1, 1, 0], [1, 1, 1]]
    expected = [plain[0, 11], plain[1, 12], plain[2, 13]]
    assert s.logprobs[1].tolist() == pytest.approx([float(x) for x in expected], abs=1e-5)
    assert math.isclose(float(s.logprobs[0, 2]), 0.0)


def test_a_short_run_raises_the_mean_reward(tiny_model):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32),
                           LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", lora_dropout=0.0))
    prompts = [[{"role": "user", "content": q}] for q in
               ["Monday", "What is the capital of France?", "yes", "Turn this note into a calendar entry.",
                "Friday at 9 AM", "ok", "Paris or Rome?", "no"]]
    shorter_is_better = lambda _prompts, answers: [-len(a) / 50 for a in answers]  # noqa: E731
    settings = ppo.PpoSettings(steps=8, rollout_batch=16, mini_batch=8, ppo_epochs=2, max_new_tokens=16,
                               lr=3e-3, kl_coef=0.01, seed=0)
    _, history = ppo.train(model, tok, prompts, shorter_is_better, settings)
    first, last = history[0]["reward"], sum(h["reward"] for h in history[-2:]) / 2
    assert last > first + 0.05, history
    assert history[-1]["kl"] > 0 and all(h["entropy"] >= 0 for h in history)


# ------------------------------------------------------------------------------- checkpoints
PROMPTS = [[{"role": "user", "content": q}] for q in
           ["Monday", "What is the capital of France?", "yes", "Friday at 9 AM", "ok", "no"]]


def _policy(tiny_model):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)  # the same starting adapter every time
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32),
                           LoraConfig(r=4, target_modules="all-linear", lora_dropout=0.0))
    return model, AutoTokenizer.from_pretrained(tiny_model)


def _settings(folder, **changes) -> ppo.PpoSettings:
    return ppo.PpoSettings(**{"steps": 4, "rollout_batch": 4, "mini_batch": 2, "ppo_epochs": 2,
                              "max_new_tokens": 6, "lr": 3e-3, "seed": 0, "save_steps": 2,
                              "checkpoint_dir": str(folder / "checkpoints"), **changes})


def _shorter(_prompts, answers):
    return [-len(a) / 20 for a in answers]


def _weights(model, value_head) -> dict[str, torch.Tensor]:
    trained = {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}
    return {**trained, **{f"value_head.{k}": v.clone() for k, v in value_head.state_dict().items()}}


def test_a_run_stopped_by_sigterm_resumes_to_the_same_weights_as_an_unbroken_run(tiny_model, tmp_path):
    import os
    import signal

    from tunelab.rundir import RunDir
    from tunelab.train import guards

    model, tok = _policy(tiny_model)
    start = _weights(model, ppo.ValueHead(model.config.hidden_size))
    head, history = ppo.train(model, tok, PROMPTS, _shorter, _settings(tmp_path / "unbroken", save_total_limit=1))
    unbroken = _weights(model, head)
    assert not all(torch.equal(start[k], unbroken[k]) for k in start if not k.startswith("value_head"))
    assert [h["step"] for h in history] == [1, 2, 3, 4]
    assert sorted(p.name for p in (tmp_path / "unbroken" / "checkpoints").iterdir()) == ["checkpoint-4"]

    calls = {"n": 0}

    def term_in_step_3(prompts, answers):
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return _shorter(prompts, answers)

    stopped = tmp_path / "stopped"
    model, tok = _policy(tiny_model)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(guards.Interrupted) as caught:
        ppo.train(model, tok, PROMPTS, term_in_step_3, _settings(stopped))
    assert caught.value.exit_code == 143
    assert f"checkpoint-3 is saved; resume with: tunelab train --resume {stopped}" in str(caught.value)
    assert signal.getsignal(signal.SIGTERM) == before
    checkpoint = RunDir(stopped).resume_checkpoint()
    assert checkpoint.name == "checkpoint-3" and (checkpoint / "ppo_state.json").is_file()

    model, tok = _policy(tiny_model)
    head, history = ppo.train(model, tok, PROMPTS, _shorter, _settings(stopped, resume_from=str(checkpoint)))
    assert [h["step"] for h in history] == [4]
    resumed = _weights(model, head)
    assert resumed.keys() == unbroken.keys()
    assert all(torch.equal(resumed[k], unbroken[k]) for k in unbroken)


def test_a_checkpoint_over_other_prompts_is_refused(tiny_model, tmp_path):
    from tunelab.errors import RunError

    model, tok = _policy(tiny_model)
    ppo.train(model, tok, PROMPTS, _shorter, _settings(tmp_path, steps=2))
    model, tok = _policy(tiny_model)
    with pytest.raises(RunError, match="more prompts than the 2 given"):
        ppo.train(model, tok, PROMPTS[:2], _shorter,
                  _settings(tmp_path, resume_from=str(tmp_path / "checkpoints" / "checkpoint-2")))


@pytest.mark.parametrize("where", ["reward", "loss"])
def test_a_nan_stops_the_loop_before_any_update_or_checkpoint(tiny_model, tmp_path, where):
    from tunelab.train import guards

    model, tok = _policy(tiny_model)
    start = {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}
    reward = (lambda _p, answers: [float("nan")] * len(answers)) if where == "reward" else _shorter
    if where == "loss":  # NaN logits only while gradients are on: the rollout is fine, the update is not
        model.get_output_embeddings().register_forward_hook(
            lambda _m, _i, out: out * float("nan") if torch.is_grad_enabled() else out)
    with pytest.raises(guards.NonFinite, match=f"{where} became nan at step 1"):
        ppo.train(model, tok, PROMPTS, reward, _settings(tmp_path, save_steps=1))
    assert not (tmp_path / "checkpoints").exists()
    assert all(torch.equal(v, start[k]) for k, v in model.named_parameters() if v.requires_grad)
