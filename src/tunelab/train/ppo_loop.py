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

Every ``save_steps`` the loop writes ``checkpoint-<step>``: the policy adapter, the value head,
the optimizer, the random generators and the prompt order, so a run resumed from it ends
with the same weights as one never stopped. SIGTERM/SIGINT end the run after the current step
with a checkpoint (guards.Interrupted); a NaN or infinite loss, gradient norm or reward stops
it before the update is applied (guards.NonFinite).

The maths (``gae``, ``policy_loss``, ``value_loss``, ``token_rewards``) are plain tensor
functions, tested against values worked out by hand.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from tunelab.errors import RunError
from tunelab.events import EventSink, no_events
from tunelab.io import atomic_folder, fsync_dir
from tunelab.rundir import checkpoint_step
from tunelab.train import guards, tracking

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
    save_steps: int = 0  # a checkpoint every this many steps, and at the last (0: none)
    checkpoint_dir: str | None = None  # where checkpoint-<step> folders go (a run's checkpoints/)
    resume_from: str | None = None  # a checkpoint-<step> folder to continue from
    save_total_limit: int | None = None  # checkpoints kept on disk (None: all)


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


# ------------------------------------------------------------------------------- the loop
@dataclass
class _Parts:
    """What one PPO step works with, built once per run."""

    model: object
    tokenizer: object
    value_head: ValueHead
    optimizer: torch.optim.Optimizer
    params: list[torch.nn.Parameter]  # the policy's trainable weights, then the value head's
    pad: int
    stops: object
    reference: str | None


@dataclass
class _Progress:
    """Where the run stands besides its weights: the last step done, the prompts still to
    come in this pass over them, and the generator that shuffles them."""

    step: int
    rng: random.Random
    order: list[int] = field(default_factory=list)

    def next_batch(self, n_prompts: int, size: int) -> list[int]:
        if len(self.order) < size:
            fresh = list(range(n_prompts))
            self.rng.shuffle(fresh)
            self.order += fresh
        batch, self.order = self.order[:size], self.order[size:]
        return batch


def train(model, tokenizer, prompts: list[list[dict]], reward_fn: RewardFn, s: PpoSettings, *,
          reference_adapter: str | None = None, events: EventSink = no_events,
          log: Callable[[dict], None] | None = None) -> tuple[ValueHead, list[dict]]:
    """Optimise the LoRA policy ``model`` in place (from ``s.resume_from`` when set); return
    the critic and one record per step run (also sent to the run's train.report_to trackers,
    under the names the trainer's callbacks give). Raises guards.Interrupted after a checkpoint on
    SIGTERM/SIGINT, guards.NonFinite on a NaN/inf, guards.OutOfMemory."""
    from tunelab.data.tokens import encode_prompt
    from tunelab.inference.generate import stop_ids

    # checkpoint_dir is a run's checkpoints/ folder: the run (and its train.report_to) is its parent
    run_path = Path(s.checkpoint_dir).parent if s.checkpoint_dir else None
    with guards.friendly_oom(), guards.SignalFlag() as stop, tracking.loop_session(run_path, model) as tracker:
        torch.manual_seed(s.seed)
        value_head = ValueHead(model.config.hidden_size).to(next(model.parameters()).device)
        params = [p for p in model.parameters() if p.requires_grad] + list(value_head.parameters())
        parts = _Parts(model, tokenizer, value_head,
                       torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay), params,
                       tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
                       stop_ids(model, tokenizer), reference_adapter)
        progress = _Progress(0, random.Random(s.seed))
        if s.resume_from:
            progress = load_checkpoint(Path(s.resume_from), parts, len(prompts))
        encoded = [encode_prompt(tokenizer, p) for p in prompts]
        history: list[dict] = []
        events({"event": "start", "total_steps": s.steps, "step": progress.step})
        if tracker:
            tracker.begin(progress.step)
        while progress.step < s.steps:
            progress.step += 1
            batch = progress.next_batch(len(prompts), s.rollout_batch)
            record = _step(parts, s, [prompts[i] for i in batch], [encoded[i] for i in batch], reward_fn,
                           progress)
            history.append(record)
            if log:
                log(record)
            if tracker:
                tracker.log(record)
            events({"event": "step", "step": progress.step, "total_steps": s.steps,
                    "info": f"reward {record['reward']:.3f}  kl {record['kl']:.3f}  entropy {record['entropy']:.2f}"})
            saved = _maybe_save(parts, s, progress, force=stop.signum is not None)
            if stop.signum is not None:
                # checkpoint_dir is a run's checkpoints/ folder: the run is its parent
                raise guards.interrupted(stop, Path(s.checkpoint_dir).parent if saved else None, saved)
        events({"event": "end", "step": progress.step})
    model.eval()
    return value_head, history


def _step(parts: _Parts, s: PpoSettings, prompts: list[list[dict]], batch_prompts: list[list[int]],
          reward_fn: RewardFn, progress: _Progress) -> dict:
    """One rollout batch: sample, score, advantages, then the clipped updates; its record."""
    from tunelab.inference.generate import generate_ids, to_text

    start, model = time.perf_counter(), parts.model
    # 1-2. rollout and score
    model.eval()  # no dropout: the ratio must be 1 before the first update
    answers = generate_ids(model, parts.tokenizer, batch_prompts, max_new_tokens=s.max_new_tokens,
                           batch_size=s.rollout_batch, temperature=s.temperature, seed=s.seed + progress.step)
    texts = [to_text(parts.tokenizer, a, parts.stops) for a in answers]
    scores = torch.tensor(reward_fn(prompts, texts), dtype=torch.float32)
    guards.check_finite(progress.step, reward=float(scores.sum()))

    # 3-4. rewards, advantages
    with torch.no_grad():
        old = score_answers(model, parts.value_head, batch_prompts, answers, parts.pad, s.temperature)
        with reference(model, parts.reference):
            ref = score_answers(model, None, batch_prompts, answers, parts.pad, s.temperature)
    kl = (old.logprobs - ref.logprobs) * old.mask
    rewards = token_rewards(scores, kl, old.mask, s.kl_coef)
    advantages, returns = gae(rewards, old.values, old.mask, s.gamma, s.lam)
    advantages = whiten(advantages, old.mask)

    stats = _update(parts, s, batch_prompts, answers, old, advantages, returns, progress)
    return {
        "step": progress.step,
        "reward": round(float(scores.mean()), 4),
        "kl": round(float(kl.sum(-1).mean()), 4),
        "entropy": round(float(masked_mean(old.entropy, old.mask)), 4),
        "answer_tokens": round(float(old.mask.sum(-1).mean()), 1),
        **stats,
        "seconds": round(time.perf_counter() - start, 2),
    }


def _update(parts: _Parts, s: PpoSettings, batch_prompts, answers, old: Scored, advantages, returns,
            progress: _Progress) -> dict:
    """5. ``ppo_epochs`` passes of clipped minibatch updates; mean losses and clip share. A
    non-finite loss or gradient norm stops before the optimizer applies it."""
    stats = {"policy_loss": 0.0, "value_loss": 0.0, "clipfrac": 0.0}
    updates = 0
    for _ in range(s.ppo_epochs):
        perm = progress.rng.sample(range(len(batch_prompts)), len(batch_prompts))
        for lo in range(0, len(perm), s.mini_batch):
            mb = perm[lo:lo + s.mini_batch]
            new = score_answers(parts.model, parts.value_head, [batch_prompts[i] for i in mb],
                                [answers[i] for i in mb], parts.pad, s.temperature)
            width = new.mask.shape[1]  # a minibatch's longest answer may be shorter than the batch's
            pick = lambda x: x[mb][:, :width]  # noqa: E731
            pl, clipfrac = policy_loss(new.logprobs, pick(old.logprobs), pick(advantages), new.mask, s.clip)
            vl = value_loss(new.values, pick(old.values), pick(returns), new.mask, s.clip_value)
            loss = pl + s.vf_coef * vl
            guards.check_finite(progress.step, loss=loss.item())
            parts.optimizer.zero_grad()
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(parts.params, s.max_grad_norm)
            guards.check_finite(progress.step, grad_norm=float(norm))
            parts.optimizer.step()
            stats["policy_loss"] += pl.item()
            stats["value_loss"] += vl.item()
            stats["clipfrac"] += clipfrac.item()
            updates += 1
    return {k: round(v / max(updates, 1), 4) for k, v in stats.items()}


# ------------------------------------------------------------------------------- checkpoints
POLICY = "default"  # the trainable adapter's name (the frozen reference, if any, is not saved)
STATE_FILE = "ppo_state.json"  # written last: its presence marks a complete checkpoint (rundir)


def save_value_head(value_head: ValueHead, path: str | Path) -> None:
    """The critic's weights as safetensors, written atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.detach().contiguous() for k, v in value_head.state_dict().items()}, str(tmp))
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _maybe_save(parts: _Parts, s: PpoSettings, progress: _Progress, force: bool) -> Path | None:
    """checkpoint-<step> when one is due (every save_steps, the last step, or ``force``)."""
    due = s.save_steps > 0 and (progress.step % s.save_steps == 0 or progress.step == s.steps)
    if not s.checkpoint_dir or not (due or force):
        return None
    folder = Path(s.checkpoint_dir) / f"checkpoint-{progress.step}"
    save_checkpoint(folder, parts, progress)
    if s.save_total_limit:
        _drop_old_checkpoints(Path(s.checkpoint_dir), keep=s.save_total_limit)
    return folder


def save_checkpoint(folder: Path, parts: _Parts, progress: _Progress) -> None:
    """Everything a resume needs, in a folder that appears complete or not at all."""
    with atomic_folder(folder) as tmp:
        parts.model.save_pretrained(str(tmp / "policy"), selected_adapters=[POLICY])
        save_value_head(parts.value_head, tmp / "value_head.safetensors")
        torch.save(parts.optimizer.state_dict(), tmp / "optimizer.pt")
        rng = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        torch.save(rng, tmp / "rng_state.pt")
        version, internal, gauss = progress.rng.getstate()
        state = {"step": progress.step, "order": progress.order,
                 "python_rng": {"version": version, "state": list(internal), "gauss_next": gauss}}
        (tmp / STATE_FILE).write_text(json.dumps(state) + "\n")


def load_checkpoint(folder: Path, parts: _Parts, n_prompts: int) -> _Progress:
    """Restore the weights, optimizer and random generators saved in ``folder``; the progress
    to continue from. Torch files load with weights_only (no pickled objects)."""
    from peft import set_peft_model_state_dict
    from peft.utils import load_peft_weights
    from safetensors.torch import load_file

    state = json.loads((folder / STATE_FILE).read_text())
    if any(i >= n_prompts for i in state["order"]):
        raise RunError(f"{folder}: saved over more prompts than the {n_prompts} given; resume with the run's data")
    device = next(parts.model.parameters()).device
    result = set_peft_model_state_dict(parts.model, load_peft_weights(str(folder / "policy"), device=str(device)),
                                       adapter_name=POLICY)
    if result.unexpected_keys:
        raise RunError(f"{folder / 'policy'}: adapter does not match this model ({result.unexpected_keys[0]})")
    parts.value_head.load_state_dict(load_file(str(folder / "value_head.safetensors"), device=str(device)))
    parts.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location=device, weights_only=True))
    rng = torch.load(folder / "rng_state.pt", weights_only=True)
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    saved = state["python_rng"]
    generator = random.Random()
    generator.setstate((saved["version"], tuple(saved["state"]), saved["gauss_next"]))
    return _Progress(state["step"], generator, list(state["order"]))


def _drop_old_checkpoints(folder: Path, keep: int) -> None:
    found = sorted((p for p in folder.glob("checkpoint-*") if p.is_dir()), key=checkpoint_step)
    for old in found[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
