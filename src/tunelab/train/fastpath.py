"""The CPU fast path: what `tunelab train` does differently from a plain TRL run, and why.

- Packed batches: a batch's examples are packed into a few rows no longer than its longest
  example, each with per-example ``position_ids`` and a block-diagonal causal attention mask,
  so no example sees another, attention is per row (not quadratic in the whole batch) and
  little compute is spent on padding (PackingCollator, given to TRL as its data collator).
  transformers 5.24 builds its own mask from packed ``position_ids`` by comparing positions
  only, which lets an example see the start of the one before it; an explicit 4D mask is
  used as given, so we pass one.
- bf16 compute where the hardware has it, with the frozen base stored in bf16 (half the
  memory, no per-step casts); trainable weights and optimizer state stay fp32.
- The loss is computed only at loss-bearing positions, in tiles, without the full
  [tokens, vocab] logits: TRL's fused LM head, which its SFTTrainer uses for the loss.
- Activation checkpointing only when the activations would not fit in memory (SFT), and for
  DPO on a CPU, where it is the faster choice (dpo_checkpointing).
- One compute thread per available core (shared among the processes of a multi-process run).
"""

from __future__ import annotations

import os


# Activation bytes per token per layer, in units of the hidden size, for a pre-norm decoder
# block in 16-bit (Korthikanti et al., 2022, without sequence parallelism): 34·h, plus the
# attention scores 5·heads·seq (SDPA keeps fewer; this errs on the safe side).
ACT_FACTOR = 34


def padding_free(method: str, fast: bool) -> bool:
    """Prompt and prefix tuning prepend virtual tokens to every row of a batch; a padding-free
    batch is one row holding many examples, so only the first would see them."""
    from tunelab.methods import get

    return fast and get(method).packable


class PackingCollator:
    """Packs a batch of tokenised examples into a few rows of similar length, each row holding
    whole examples with its own block-diagonal causal mask.

    Rows are filled first-fit-decreasing up to the longest example's length, so attention costs
    rows·L² instead of (whole batch)² and little is spent on padding. The first label of every
    example is masked: it would be predicted from the previous example's last token. Padding
    positions carry label -100 and attend only to themselves (a fully masked query row would
    give NaN). The loss is a sum over label tokens, so it does not depend on which row an
    example lands in.
    """

    def __init__(self, attn_implementation: str | None = "sdpa", pad_id: int = 0) -> None:
        self.additive = attn_implementation == "eager"  # eager adds the mask to the scores
        self.pad_id = pad_id

    def __call__(self, examples: list[dict]) -> dict:
        import torch

        rows = pack_rows([len(ex["input_ids"]) for ex in examples])
        width = max(sum(len(examples[i]["input_ids"]) for i in row) for row in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        positions = torch.zeros((len(rows), width), dtype=torch.long)
        segment = -torch.arange(1, width + 1).repeat(len(rows), 1)  # padding: a segment of its own
        for r, row in enumerate(rows):
            start = 0
            for i in row:
                n = len(examples[i]["input_ids"])
                ids[r, start:start + n] = torch.tensor(examples[i]["input_ids"])
                labels[r, start + 1:start + n] = torch.tensor(examples[i]["labels"][1:])
                positions[r, start:start + n] = torch.arange(n)
                segment[r, start:start + n] = i
                start += n
        causal = torch.ones(width, width, dtype=torch.bool).tril()
        mask = ((segment[:, :, None] == segment[:, None, :]) & causal)[:, None]
        if self.additive:
            mask = torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)
        return {"input_ids": ids, "labels": labels, "position_ids": positions, "attention_mask": mask}


def pack_rows(lengths: list[int]) -> list[list[int]]:
    """Example indices grouped into rows no longer than the longest example (first fit,
    longest first): few rows, little padding."""
    capacity = max(lengths)
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        slot = next((r for r, free in enumerate(room) if free >= lengths[i]), None)
        if slot is None:
            rows.append([i])
            room.append(capacity - lengths[i])
        else:
            rows[slot].append(i)
            room[slot] -= lengths[i]
    return rows


def activation_bytes(config, batch_tokens: int, seq_len: int, bf16: bool) -> float:
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    h, layers, heads = cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads
    per_token_layer = ACT_FACTOR * h + 5 * heads * seq_len
    return batch_tokens * layers * per_token_layer * (1.0 if bf16 else 2.0)


def available_bytes() -> float:
    try:
        import psutil

        return float(psutil.virtual_memory().available)
    except ImportError:  # psutil comes with accelerate; without it assume a small laptop
        return 4e9


def needs_checkpointing(config, batch_tokens: int, seq_len: int, bf16: bool, budget: float | None = None) -> bool:
    """True when the estimated activations exceed half the memory that is free now."""
    budget = available_bytes() * 0.5 if budget is None else budget
    return activation_bytes(config, batch_tokens, seq_len, bf16) > budget


def dpo_checkpointing(setting: str, on_gpu: bool) -> bool:
    """Activation checkpointing for DPO (train.gradient_checkpointing). A DPO batch holds a
    chosen and a rejected row per pair, prompts included. auto: on a CPU, on; there recomputing
    is faster than keeping the activations. Measured, bundled model, 3 steps of 8 pairs of the
    shipped preference file: 160 s and 7.6 GB peak with it, 230 s and 11.9 GB without, the
    difference mostly kernel time (36 s against 165 s: the allocator faulting in fresh pages for
    GBs of activations at every step). On a GPU, off: recomputing costs a third more compute."""
    if setting != "auto":
        return setting == "on"
    return not on_gpu


def set_threads() -> int:
    """Use every core this process may run on (torch defaults to physical cores only), shared
    among the processes of the run on this machine (train/distributed.py)."""
    import torch

    from tunelab.train.distributed import threads_per_process

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    n = threads_per_process(cores)
    if not torch.cuda.is_available():
        torch.set_num_threads(n)
    return n


def final_evaluation(trainer) -> dict:
    """The held-out metrics of the weights the run ends with: the evaluation the loop already
    ran on them (running it again costs a whole pass over the held-out data for the same
    numbers) — at the last step, or, with the best checkpoint restored at the end, at the best
    step — else a fresh one."""
    state = trainer.state
    step = getattr(state, "best_global_step", None) if trainer.args.load_best_model_at_end else state.global_step
    for entry in reversed(state.log_history if step is not None else []):
        if entry.get("step") == step and "eval_loss" in entry:
            return dict(entry)
    return trainer.evaluate()
