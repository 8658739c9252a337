"""QLoRA: the frozen base stored in 4-bit NF4 with double quantisation (bitsandbytes, on
CPU or CUDA), LoRA adapters on top, compute in bf16 where the hardware supports it.

The base takes about a third of its fp32 memory; the adapter is an ordinary LoRA adapter.
"""

from __future__ import annotations

from pydantic import Field

from tunelab.errors import ConfigError
from tunelab.methods.lora import LoraSettings, peft_config


class QloraSettings(LoraSettings):
    quant_type: str = Field("nf4", pattern="^(nf4|fp4)$", description="4-bit data type of the frozen base")
    double_quant: bool = Field(True, description="also quantise the quantisation constants (saves ~0.4 bit/weight)")
    compute_dtype: str = Field("auto", pattern="^(auto|bfloat16|float32|float16)$",
                               description="dtype of the 4-bit matmuls; auto = bf16 where supported")


def check_available() -> None:
    """Raise ConfigError unless bitsandbytes can quantise a weight on this machine."""
    try:
        import bitsandbytes.functional as bnbf
        import torch

        packed, state = bnbf.quantize_4bit(torch.randn(64, 64), quant_type="nf4")
        bnbf.dequantize_4bit(packed, state)
    except Exception as exc:  # any failure here means 4-bit cannot run on this machine
        raise ConfigError(
            f"qlora needs bitsandbytes 4-bit support, which is not usable here ({type(exc).__name__}: {exc})",
            hint="use --method lora, or pip install 'tunelab[qlora]' (a bitsandbytes build for this platform)",
        ) from None


def quantization_config(settings: QloraSettings):
    import torch
    from transformers import BitsAndBytesConfig

    from tunelab.device import bf16_available

    dtype = settings.compute_dtype
    if dtype == "auto":
        dtype = "bfloat16" if bf16_available() else "float32"
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=settings.quant_type,
        bnb_4bit_use_double_quant=settings.double_quant,
        bnb_4bit_compute_dtype=getattr(torch, dtype),
    )


def load_kwargs(settings: QloraSettings) -> dict:
    check_available()
    return {"quantization_config": quantization_config(settings)}


def apply(model, settings: QloraSettings, task: str = "CAUSAL_LM"):
    from peft import get_peft_model, prepare_model_for_kbit_training

    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return get_peft_model(model, peft_config(settings, task_type=task))
