"""Decoding one or two rows from half-precision copies of the weights, on a CPU serving in fp32.

A decode step multiplies one token's activations by every weight matrix, so its speed is set by
how many bytes of weights stream from memory per token. In fp32 that is 4 bytes a weight; a
float16 copy halves it, and measured on a 2-core AVX2 CPU without native bf16 a single-row
matrix-vector product over the bundled model's weights runs in about half the time
(docs/performance.md, "Decoding on this CPU"). The same CPU is ~5x slower in float16 than in
fp32 once a product has 8 or more rows (a prefill, several clients batched), so those keep the
fp32 weights: each Linear holds both and picks by the number of rows it is given.

float16 rather than bfloat16: three more mantissa bits for the same bytes and speed. Its range
(65504) is checked per call: a row with a larger activation runs in fp32 instead of overflowing.

Why not int8 weight-only kernels (``torch._weight_int8pack_mm``) or torch's dynamic
quantization? Measured here, the former runs ~2x slower than fp32 without AVX512, and the latter
is deprecated and changes the prefill too. Memory cost: the copies add half of the fp32
weights' bytes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MAX_ROWS = 2  # measured: at 4 rows the fp32 product is as fast, at 8 it is twice as fast
HALF_MAX = 65504.0


class HalfDecodeLinear(torch.nn.Linear):
    """An nn.Linear that also keeps a float16 copy of its weight for products of few rows.

    Installed by swapping the class of an existing Linear (:func:`install`), so the module keeps
    its identity, parameters and state dict; adapters wrapping it (peft's LoRA layers call
    ``base_layer(x)``) see an nn.Linear as before."""

    half_weight: torch.Tensor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // max(x.shape[-1], 1)
        if rows > MAX_ROWS or torch.is_grad_enabled() or x.dtype != torch.float32:
            return F.linear(x, self.weight, self.bias)
        if not bool(x.abs().max() < HALF_MAX):  # too large for float16 (or not finite): fp32
            return F.linear(x, self.weight, self.bias)
        out = F.linear(x.half(), self.half_weight).float()
        return out if self.bias is None else out + self.bias


def install(model: torch.nn.Module) -> int:
    """Give every fp32 nn.Linear of ``model`` on the CPU a float16 copy for decoding; returns how
    many. Call once on a loaded base model (before adapters are added)."""
    count = 0
    for module in model.modules():
        if type(module) is torch.nn.Linear and module.weight.dtype == torch.float32 and module.weight.device.type == "cpu":
            module.register_buffer("half_weight", module.weight.detach().half(), persistent=False)
            module.__class__ = HalfDecodeLinear
            count += 1
    return count


def wanted(setting: str, dtype: str, device_map: str | None) -> bool:
    """Whether to install the copies: ``auto`` does when the model serves in fp32 on the CPU
    (a CPU without native bf16: with it, the whole model already serves in bf16)."""
    if setting in ("on", "off"):
        return setting == "on"
    return dtype == "float32" and device_map in (None, "cpu") and not torch.cuda.is_available()
