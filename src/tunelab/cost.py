"""Cost estimates: training tokens, API fine-tuning price, and the self-hosted FLOPs, time
and memory of each method. Prices and measured throughput live in resources/prices.json
(dated, easy to update); everything else is arithmetic shown in the docstrings.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache

from tunelab import resources
from tunelab.methods import METHODS

@lru_cache(maxsize=1)
def prices() -> dict:
    return json.loads(resources.path("prices.json").read_text())


def training_flops(params: float, tokens: float, method: str) -> float:
    """≈ 6·N·T for full fine-tuning (forward 2N, backward 4N per token). With a frozen base the
    backward pass skips the weight gradients of the base: ≈ 4·N·T, plus 6·n·T for the n
    trainable adapter parameters."""
    if method == "full":
        return 6.0 * params * tokens
    return 4.0 * params * tokens + 6.0 * METHODS[method].trainable_share * params * tokens


def training_memory_bytes(params: float, method: str) -> float:
    """Weights, gradients and Adam state while training (activations excluded): base bytes per
    parameter, plus 16 bytes per trainable adapter parameter (fp32 weight, grad, 2 moments)."""
    m = METHODS[method]
    if m.trainable_share >= 1.0:  # the base is what trains: its bytes already count grads and moments
        return m.base_bytes * params
    return m.base_bytes * params + 16.0 * m.trainable_share * params


# Headroom on each GPU for activations, the CUDA context and fragmentation: the weights, gradients
# and optimizer state are planned into this share of its memory.
GPU_USABLE = 0.8


def gpu_training_memory_bytes(params: float, method: str) -> float:
    """training_memory_bytes on a GPU, which computes in bf16: a method whose frozen base may be
    stored in bf16 (Method.bf16_base) holds it in 2 bytes per parameter instead of fp32's 4."""
    m = METHODS[method]
    if m.bf16_base and m.trainable_share < 1.0 and m.base_bytes > 2.0:
        return 2.0 * params + 16.0 * m.trainable_share * params
    return training_memory_bytes(params, method)


def gpus_needed(params: float, method: str, gpu_bytes: float) -> dict:
    """GPUs of ``gpu_bytes`` each that training needs (gpu_training_memory_bytes). DDP keeps a
    whole copy per GPU, so it fits on one or not at all; FSDP / DeepSpeed ZeRO-3 shard weights,
    gradients and optimizer state evenly, so they need ceil(total / usable memory per GPU)."""
    total = gpu_training_memory_bytes(params, method)
    usable = GPU_USABLE * gpu_bytes
    sharded = max(1, math.ceil(total / usable))
    return {"memory_gb": round(total / 1e9, 1), "ddp": 1 if total <= usable else None, "fsdp": sharded,
            "mode": "ddp" if total <= usable else "fsdp"}


def parse_bytes(text: str) -> float:
    """'80GB', '24 GiB', '40g' -> bytes (decimal GB, binary GiB)."""
    import re

    from tunelab.errors import ConfigError

    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(gib|gb|g|tib|tb|t)?\s*", text.lower())
    if not match:
        raise ConfigError(f"--gpu-memory {text!r}: expected a size like 80GB or 24GiB")
    unit = {"gib": 2**30, "gb": 1e9, "g": 1e9, "tib": 2**40, "tb": 1e12, "t": 1e12}[match.group(2) or "gb"]
    return float(match.group(1)) * unit


def seconds_on_this_machine(params: float, tokens: float, method: str) -> float:
    """Wall time at the throughput measured for the bundled 135M model on this machine's CPU,
    scaled by FLOPs per token for other sizes (a rough guide for large models)."""
    measured = prices()["measured"]["tokens_per_second"]
    rate = measured.get(method, measured["lora"])
    ref_params = 0.135e9
    ref_flops = training_flops(ref_params, 1.0, method)
    return tokens / rate * training_flops(params, 1.0, method) / ref_flops


def estimate(tokens_per_epoch: int, epochs: float, params: float, method: str, gpu_bytes: float | None = None) -> dict:
    total = tokens_per_epoch * epochs
    table = prices()
    api = {name: {"training_usd": round(total / 1000 * p["training"], 4),
                  "per_1k_input_usd": p["input"], "per_1k_output_usd": p["output"]}
           for name, p in table["api"].items()}
    self_hosted = {}
    for m in METHODS:
        secs = seconds_on_this_machine(params, total, m)
        self_hosted[m] = {
            "flops": training_flops(params, total, m),
            "memory_gb": round(training_memory_bytes(params, m) / 1e9, 3),
            "hours_on_this_cpu": round(secs / 3600, 3),
            "cpu_cost_usd": round(secs / 3600 * table["self_hosted"]["cpu_hour"], 4),
        }
        if gpu_bytes:
            self_hosted[m]["gpus"] = gpus_needed(params, m, gpu_bytes)
    return {
        "tokens_per_epoch": tokens_per_epoch,
        "epochs": epochs,
        "training_tokens": total,
        "params": params,
        "method": method,
        "api": api,
        "self_hosted": self_hosted,
        "prices_as_of": table["as_of"],
    }


def estimate_file(data, *, model: str, method: str = "lora", epochs: float = 3.0, gpu_memory: str | None = None,
                  chat_template: str | None = None) -> dict:
    """Training tokens, API price and self-hosted FLOPs/time/memory for fine-tuning on ``data``
    (rendered with ``chat_template`` when given: a base model has none of its own)."""
    from tunelab import methods
    from tunelab.data import dataset
    from tunelab.data.tokens import count_tokens
    from tunelab.errors import ConfigError
    from tunelab.models.load import load_tokenizer, model_params, resolve

    methods.get(method)
    if epochs <= 0:
        raise ConfigError(f"--epochs must be positive, got {epochs}")
    conversations = dataset.load_conversations(data)
    ref = resolve(model)
    tokens = sum(count_tokens(load_tokenizer(ref, chat_template=chat_template), conversations))
    return {"data": str(data), "rows": len(conversations), "model": ref.name,
            **estimate(tokens, epochs, model_params(ref), method, parse_bytes(gpu_memory) if gpu_memory else None)}


# The training hardware the catalog's GPU hints are worked out for: LoRA on 80 GB GPUs (A100 /
# H100 80GB). `tunelab estimate --gpu-memory` answers for any other method and memory.
HINT_METHOD = "lora"
HINT_GPU_MEMORY = "80GB"


def gpu_hint(params_b: float, method: str = HINT_METHOD, gpu_memory: str = HINT_GPU_MEMORY) -> dict:
    """How many GPUs of ``gpu_memory`` training a model of ``params_b`` billion parameters with
    ``method`` needs: gpus_needed's numbers (the one calculation) and a line saying them."""
    need = gpus_needed(params_b * 1e9, method, parse_bytes(gpu_memory))
    text = (f"{method}: 1 × {gpu_memory} GPU" if need["ddp"] else
            f"{method}: {need['fsdp']} × {gpu_memory} GPUs, fsdp")
    return {"method": method, "gpu_memory": gpu_memory, **need, "text": text}
