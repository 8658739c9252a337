"""The CPU fast path: what `tunelab train` does differently from a plain TRL run, and why.

- Padding-free batches: each batch is one row of concatenated examples with per-example
  ``position_ids`` and a block-diagonal causal attention mask, so no example sees another and
  no compute is spent on padding (PackingCollator, given to TRL as its data collator).
  transformers 5.24 builds its own mask from packed ``position_ids`` by comparing positions
  only, which lets an example see the start of the one before it; an explicit 4D mask is
  used as given, so we pass one.
- bf16 compute where the hardware has it, with the frozen base stored in bf16 (half the
  memory, no per-step casts); trainable weights and optimizer state stay fp32.
- The loss is computed only at loss-bearing positions, in tiles, without the full
  [tokens, vocab] logits: TRL's fused LM head, which its SFTTrainer uses for the loss.
- Activation checkpointing only when the activations would not fit in memory.
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
    """Concatenates a batch of tokenised examples into one row with a block-diagonal causal mask.

    The first label of every example is masked: it would be predicted from the previous
    example's last token.
    """

    def __init__(self, attn_implementation: str | None = "sdpa") -> None:
        self.additive = attn_implementation == "eager"  # eager adds the mask to the scores

    def __call__(self, examples: list[dict]) -> dict:
        import torch

        ids, labels, positions, seq = [], [], [], []
        for n, ex in enumerate(examples):
            length = len(ex["input_ids"])
            ids.extend(ex["input_ids"])
            lab = list(ex["labels"])
            lab[0] = -100
            labels.extend(lab)
            positions.extend(range(length))
            seq.extend([n] * length)
        seq_t = torch.tensor(seq)
        same = seq_t[:, None] == seq_t[None, :]
        causal = torch.ones(len(seq), len(seq), dtype=torch.bool).tril()
        mask = (same & causal)[None, None]
        if self.additive:
            mask = torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)
        return {
            "input_ids": torch.tensor([ids]),
            "labels": torch.tensor([labels]),
            "position_ids": torch.tensor([positions]),
            "attention_mask": mask,
        }


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
