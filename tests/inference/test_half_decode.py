"""float16 copies for decoding on a CPU: few-row products use them, everything else is untouched,
and answers stay the model's own."""

from __future__ import annotations

import pytest
import torch

from tunelab.inference import half_decode


@pytest.fixture
def tiny(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(tiny_model)


def linear(rows_in: int = 16, rows_out: int = 8) -> torch.nn.Linear:
    torch.manual_seed(0)
    layer = torch.nn.Linear(rows_in, rows_out)
    half_decode.install(torch.nn.Sequential(layer))
    return layer


def test_install_keeps_the_state_dict_and_adds_a_float16_copy(tiny):
    model, _ = tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count = half_decode.install(model)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert count == len(linears) > 0
    assert all(isinstance(m, half_decode.HalfDecodeLinear) and m.half_weight.dtype == torch.float16 for m in linears)
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], v) for k, v in before.items())


def test_one_row_uses_the_copy_and_many_rows_the_fp32_weight():
    layer = linear()
    with torch.inference_mode():
        layer.half_weight.zero_()  # a copy that differs shows which weight ran
        assert torch.equal(layer(torch.ones(1, 16)), layer.bias.expand(1, 8))
        assert torch.equal(layer(torch.ones(2, 1, 16)), layer.bias.expand(2, 1, 8))
        many = torch.ones(3, 16)
        assert torch.equal(layer(many), torch.nn.functional.linear(many, layer.weight, layer.bias))


def test_training_and_activations_beyond_float16_keep_fp32():
    layer = linear()
    layer.half_weight.zero_()
    x = torch.ones(1, 16)
    plain = torch.nn.functional.linear(x, layer.weight, layer.bias)
    assert torch.equal(layer(x), plain)  # gradients on: training never uses the copy
    with torch.inference_mode():
        huge = torch.full((1, 16), 1e6)
        assert torch.equal(layer(huge), torch.nn.functional.linear(huge, layer.weight, layer.bias))


def test_the_copy_agrees_with_fp32_to_float16_precision():
    layer = linear(576, 64)
    x = torch.randn(1, 576)
    with torch.inference_mode():
        fast, exact = layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias)
    assert torch.allclose(fast, exact, rtol=0, atol=1e-2 * exact.abs().max().item())


def test_greedy_answers_match_fp32(tiny):
    from tunelab.data.tokens import encode_prompt
    from tunelab.inference.generate import generate

    model, tok = tiny
    prompts = [encode_prompt(tok, [{"role": "user", "content": q}]) for q in ("Monday", "What is 2+2?", "ok")]
    exact = generate(model, tok, prompts, max_new_tokens=12, batch_size=1)
    half_decode.install(model)
    assert generate(model, tok, prompts, max_new_tokens=12, batch_size=1) == exact


def test_an_adapter_wraps_the_patched_layers(tiny):
    from peft import LoraConfig, get_peft_model

    model, _ = tiny
    half_decode.install(model)
    peft = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", lora_dropout=0.0)).eval()
    for module in peft.modules():
        if hasattr(module, "lora_A"):
            assert isinstance(module.base_layer, half_decode.HalfDecodeLinear)
            module.lora_B["default"].weight.data.fill_(0.01)  # a nonzero update that must still apply
    ids = torch.tensor([[1]])  # one row: the float16 path
    with torch.inference_mode():
        with_adapter = peft(input_ids=ids).logits[:, -1]
        with peft.disable_adapter():
            without = peft(input_ids=ids).logits[:, -1]
    assert not torch.allclose(with_adapter, without)


@pytest.mark.parametrize(("setting", "dtype", "device_map", "expected"), [
    ("auto", "float32", None, True), ("auto", "bfloat16", None, False), ("auto", "float32", "auto", False),
    ("on", "bfloat16", None, True), ("off", "float32", None, False)])
def test_auto_installs_for_fp32_on_the_cpu(setting, dtype, device_map, expected):
    assert half_decode.wanted(setting, dtype, device_map) is expected
