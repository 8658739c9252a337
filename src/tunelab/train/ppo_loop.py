"""Proximal policy optimisation (PPO) for causal language models, compact and readable.

TRL no longer ships a PPO trainer, so this is ours. One base model is in memory: the policy is
a LoRA adapter on it; the reference for the KL penalty is the same base with that adapter off
(or a frozen copy of the starting adapter, when PPO continues from an SFT run); the critic is
a small value head on the policy's last hidden states.

Each step is one rollout batch:
1. sample an answer to each prompt from the policy (temperature 1 by default);
2. score each answer with the reward function (a reward model, or any callable);
3. per-token rewards: ``-kl_coef * (log pi - log pi_ref)`` at every answer token, plus the
   score at the last one;
4. advantages by generalised advantage estimation (GAE) over the critic's values, whitened;
5. ``ppo_epochs`` passes of minibatch updates on the clipped surrogate objective plus the
   clipped value loss.

The maths (``gae``, ``policy_loss``, ``value_loss``, ``token_rewards``) are plain tensor
functions, tested against values worked out by hand.
"""

from __future__ import annotations

import contextlib
import random
import time
from dataclasses import dataclass
from typing import Callable

import torch

from tunelab.events import EventSink, no_events

RewardFn = Callable[[list[list[dict]], list[str]], list[float]]


# ------------------------------------------------------------------------------- the maths
def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def whiten(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance over the masked entries (padding stays 0)."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + 1e-8) * mask


def token_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """Per-token rewards (B, T): the KL penalty at every answer token, the score at the last."""
    rewards = -kl_coef * kl * mask
    last = mask.sum(-1).long() - 1
    rows = torch.arange(len(scores))
    rewards[rows, last.clamp(min=0)] += scores * (last >= 0)
    return rewards


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over each row's answer tokens (mask = 1, a prefix).

    ``delta_t = r_t + gamma * V_{t+1} - V_t`` (the value after the last token is 0) and
    ``A_t = delta_t + gamma * lam * A_{t+1}``; returns are ``A_t + V_t``.
    """
    advantages = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0], dtype=rewards.dtype)
    width = rewards.shape[1]
    for t in reversed(range(width)):
        following = mask[:, t + 1] if t + 1 < width else torch.zeros_like(running)
        next_value = values[:, t + 1] * following if t + 1 < width else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * running * following
        advantages[:, t] = running * mask[:, t]
    return advantages, (advantages + values) * mask


def policy_loss(logprobs, old_logprobs, advantages, mask, clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate (to minimise) and the share of tokens where the clip was active."""
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    return masked_mean(torch.maximum(unclipped, clipped), mask), masked_mean((clipped > unclipped).float(), mask)


def value_loss(values, old_values, returns, mask, clip: float) -> torch.Tensor:
    """Half the squared error to the returns, with the value change clipped as the policy's is."""
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    return 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (clipped - returns) ** 2), mask)


# ------------------------------------------------------------------------------- the model side
@dataclass
class PpoSettings:
    steps: int = 20
    rollout_batch: int = 16  # prompts answered per step
    mini_batch: int = 8  # rows per gradient update
    ppo_epochs: int = 2  # passes over each rollout batch
    max_new_tokens: int = 48
    temperature: float = 1.0
    lr: float = 1e-4
    clip: float = 0.2
    clip_value: float = 0.2
    vf_coef: float = 0.5
    kl_coef: float = 0.05
    gamma: float = 1.0
    lam: float = 0.95
    max_grad_norm: float = 1.0
    weight_decay: float = 0.0
    seed: int = 42


class ValueHead(torch.nn.Module):
    """The critic: one linear layer from the last hidden state to a scalar value."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.normal_(self.proj.weight, std=1.0 / (hidden_size + 1))
        torch.nn.init.zeros_(self.proj.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.proj(hidden.float()).squeeze(-1)


@dataclass
class Scored:
    logprobs: torch.Tensor  # (B, T) log-probability of each answer token
    entropy: torch.Tensor  # (B, T) entropy of the distribution it was drawn from
    values: torch.Tensor  # (B, T) critic's value before each answer token
    mask: torch.Tensor  # (B, T) 1 on answer tokens


def score_answers(model, value_head: ValueHead | None, prompts: list[list[int]], answers: list[list[int]],
                  pad_id: int, temperature: float = 1.0) -> Scored:
    """One forward over [left-padded prompt | right-padded answer]: log-probs, entropy and values
    for the answer tokens. Only the answer positions go through the LM head."""
    from tunelab.inference.generate import contiguous_head

    device = next(model.parameters()).device
    width = max(len(p) for p in prompts)
    tail = max(1, max(len(a) for a in answers))
    ids = torch.full((len(prompts), width + tail), pad_id, dtype=torch.long)
    attn = torch.zeros_like(ids)
    mask = torch.zeros((len(prompts), tail))
    for r, (p, a) in enumerate(zip(prompts, answers)):
        ids[r, width - len(p):width] = torch.tensor(p)
        ids[r, width:width + len(a)] = torch.tensor(a, dtype=torch.long)
        attn[r, width - len(p):width + len(a)] = 1
        mask[r, :len(a)] = 1
    positions = (attn.cumsum(-1) - 1).clamp(min=0)
    captured: list[torch.Tensor] = []
    head = model.get_output_embeddings()
    hook = head.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    try:
        with contiguous_head(model):
            logits = model(input_ids=ids.to(device), attention_mask=attn.to(device),
                           position_ids=positions.to(device), logits_to_keep=tail + 1).logits
    finally:
        hook.remove()
    logits = logits[:, :-1].float() / temperature
    logp_all = torch.log_softmax(logits, dim=-1)
    targets = ids[:, width:].to(device)
    logprobs = logp_all.gather(-1, targets[..., None]).squeeze(-1).cpu()
    entropy = -(logp_all.exp() * logp_all).sum(-1).cpu()
    values = value_head(captured[-1][:, :-1]).cpu() if value_head is not None else torch.zeros_like(logprobs)
    return Scored(logprobs * mask, entropy * mask, values * mask, mask)


@contextlib.contextmanager
def reference(model, adapter: str | None):
    """The reference policy: the base with the adapter off, or a frozen starting adapter."""
    if adapter is None:
        with model.disable_adapter():
            yield
        return
    model.set_adapter(adapter)
    try:
        yield
    finally:
        model.set_adapter("default")


def train(model, tokenizer, prompts: list[list[dict]], reward_fn: RewardFn, s: PpoSettings, *,
          reference_adapter: str | None = None, events: EventSink = no_events,
          log: Callable[[dict], None] | None = None) -> tuple[ValueHead, list[dict]]:
    """Optimise the LoRA policy ``model`` in place; return the critic and one record per step."""
    from tunelab.data.tokens import encode_prompt
    from tunelab.inference.generate import generate_ids, stop_ids, to_text

    torch.manual_seed(s.seed)
    rng = random.Random(s.seed)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stops = stop_ids(model, tokenizer)
    value_head = ValueHead(model.config.hidden_size).to(next(model.parameters()).device)
    policy_params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(policy_params + list(value_head.parameters()), lr=s.lr, weight_decay=s.weight_decay)
    encoded = [encode_prompt(tokenizer, p) for p in prompts]
    order: list[int] = []
    history: list[dict] = []
    events({"event": "start", "total_steps": s.steps, "step": 0})
    for step in range(1, s.steps + 1):
        start = time.perf_counter()
        if len(order) < s.rollout_batch:
            fresh = list(range(len(prompts)))
            rng.shuffle(fresh)
            order += fresh
        batch, order = order[:s.rollout_batch], order[s.rollout_batch:]
        batch_prompts = [encoded[i] for i in batch]

        # 1-2. rollout and score
        model.eval()  # no dropout: the ratio must be 1 before the first update
        answers = generate_ids(model, tokenizer, batch_prompts, max_new_tokens=s.max_new_tokens,
                               batch_size=s.rollout_batch, temperature=s.temperature, seed=s.seed + step)
        texts = [to_text(tokenizer, a, stops) for a in answers]
        scores = torch.tensor(reward_fn([prompts[i] for i in batch], texts), dtype=torch.float32)

        # 3-4. rewards, advantages
        with torch.no_grad():
            old = score_answers(model, value_head, batch_prompts, answers, pad, s.temperature)
            with reference(model, reference_adapter):
                ref = score_answers(model, None, batch_prompts, answers, pad, s.temperature)
        kl = (old.logprobs - ref.logprobs) * old.mask
        rewards = token_rewards(scores, kl, old.mask, s.kl_coef)
        advantages, returns = gae(rewards, old.values, old.mask, s.gamma, s.lam)
        advantages = whiten(advantages, old.mask)

        # 5. clipped updates
        stats = {"policy_loss": 0.0, "value_loss": 0.0, "clipfrac": 0.0}
        updates = 0
        for _ in range(s.ppo_epochs):
            perm = rng.sample(range(len(batch)), len(batch))
            for lo in range(0, len(perm), s.mini_batch):
                mb = perm[lo:lo + s.mini_batch]
                new = score_answers(model, value_head, [batch_prompts[i] for i in mb], [answers[i] for i in mb],
                                    pad, s.temperature)
                width = new.mask.shape[1]  # a minibatch's longest answer may be shorter than the batch's
                pick = lambda x: x[mb][:, :width]  # noqa: E731
                pl, clipfrac = policy_loss(new.logprobs, pick(old.logprobs), pick(advantages), new.mask, s.clip)
                vl = value_loss(new.values, pick(old.values), pick(returns), new.mask, s.clip_value)
                loss = pl + s.vf_coef * vl
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(policy_params + list(value_head.parameters()), s.max_grad_norm)
                optimizer.step()
                stats["policy_loss"] += pl.item()
                stats["value_loss"] += vl.item()
                stats["clipfrac"] += clipfrac.item()
                updates += 1
        record = {
            "step": step,
            "reward": round(float(scores.mean()), 4),
            "kl": round(float(kl.sum(-1).mean()), 4),
            "entropy": round(float(masked_mean(old.entropy, old.mask)), 4),
            "answer_tokens": round(float(old.mask.sum(-1).mean()), 1),
            **{k: round(v / max(updates, 1), 4) for k, v in stats.items()},
            "seconds": round(time.perf_counter() - start, 2),
        }
        history.append(record)
        if log:
            log(record)
        events({"event": "step", "step": step, "total_steps": s.steps,
                "info": f"reward {record['reward']:.3f}  kl {record['kl']:.3f}  entropy {record['entropy']:.2f}"})
    events({"event": "end", "step": s.steps})
    model.eval()
    return value_head, history
