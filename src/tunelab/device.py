"""What the hardware can do: bf16 support and thread counts."""

from __future__ import annotations

import functools
from pathlib import Path


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """True when the CPU has native bf16 matrix instructions (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def bf16_available() -> bool:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return cpu_has_bf16()


def use_bf16(setting: str) -> bool:
    """Resolve train.bf16 (auto | on | off) against the hardware."""
    if setting == "off":
        return False
    if setting == "on":
        return True
    return bf16_available()
