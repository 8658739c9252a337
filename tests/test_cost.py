"""Cost estimates checked against hand-computed values."""

from __future__ import annotations

import json

import pytest

from tests.conftest import write_jsonl
from tests.helpers import run_cli
from tunelab.methods import METHODS
from tunelab import cost


def test_flops_memory_and_time_by_hand():
    n, t = 1e9, 1e6
    assert cost.training_flops(n, t, "full") == 6e15
    assert cost.training_flops(n, t, "lora") == pytest.approx(4e15 + 6 * METHODS["lora"].trainable_share * 1e15)
    assert cost.training_memory_bytes(n, "full") == 16e9
    assert cost.training_memory_bytes(n, "qlora") == pytest.approx(0.5625e9 + 16 * METHODS["qlora"].trainable_share * 1e9)
    rate = cost.prices()["measured"]["tokens_per_second"]["full"]
    # the bundled size runs at the measured rate; 10x the parameters takes 10x as long
    assert cost.seconds_on_this_machine(0.135e9, 1000, "full") == pytest.approx(1000 / rate)
    assert cost.seconds_on_this_machine(1.35e9, 1000, "full") == pytest.approx(10000 / rate)


def test_estimate_command_numbers(capsys, tiny_model, tmp_path):
    from tunelab.data.tokens import count_tokens
    from tunelab.data.validate import parse_file
    from tunelab.models.load import load_tokenizer, model_params, resolve

    rows = [{"instruction": f"Say {i}", "output": f"{i}"} for i in range(10)]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    code, out, err = run_cli(capsys, "estimate", "--data", path, "--model", tiny_model, "--epochs", "2", "--json")
    assert code == 0, err
    r = json.loads(out)
    ref = resolve(tiny_model)
    tokens = sum(count_tokens(load_tokenizer(ref), parse_file(path).messages))
    assert r["tokens_per_epoch"] == tokens and r["training_tokens"] == 2 * tokens
    assert r["params"] == model_params(ref)
    price = cost.prices()["api"]["gpt-3.5-turbo"]["training"]
    assert r["api"]["gpt-3.5-turbo"]["training_usd"] == round(2 * tokens / 1000 * price, 4)
    assert r["self_hosted"]["full"]["flops"] == 6 * r["params"] * 2 * tokens
    code, _, err = run_cli(capsys, "estimate", "--data", path, "--model", tiny_model, "--method", "magic")
    assert code == 2 and "unknown method" in err


def test_gpu_memory_keeps_a_bf16_base_where_the_method_allows_it():
    n = 1e9
    assert cost.gpu_training_memory_bytes(n, "lora") == pytest.approx(2e9 + 16 * METHODS["lora"].trainable_share * n)
    assert cost.gpu_training_memory_bytes(n, "qlora") == cost.training_memory_bytes(n, "qlora")  # 4-bit already
    assert cost.gpu_training_memory_bytes(n, "full") == cost.training_memory_bytes(n, "full") == 16e9


def test_the_catalogs_gpu_hints_are_the_gpus_needed_calculation():
    from tunelab.models import catalog

    big = catalog.get("llama-3.1-70b-instruct")
    need = cost.gpus_needed(big.params_b * 1e9, "lora", cost.parse_bytes("80GB"))
    hint = cost.gpu_hint(big.params_b)  # what `tunelab models` shows
    assert {k: hint[k] for k in need} == need and need["ddp"] is None and need["mode"] == "fsdp"
    assert hint["text"] == f"lora: {need['fsdp']} × 80GB GPUs, fsdp"
    # LoRA's bf16 base + adapter state does not fit in 80% of one 80 GB GPU, and does in that many
    assert (need["fsdp"] - 1) * cost.GPU_USABLE * 80e9 < cost.gpu_training_memory_bytes(big.params_b * 1e9, "lora")
    assert cost.gpu_hint(big.params_b, "qlora", "80GB")["text"] == "qlora: 1 × 80GB GPU"
    small_gpus = cost.gpus_needed(big.params_b * 1e9, "lora", 24e9)["fsdp"]
    assert cost.gpu_hint(big.params_b, "lora", "24GB")["fsdp"] == small_gpus
    assert cost.gpu_hint(catalog.get("llama-3.1-8b-instruct").params_b)["mode"] == "ddp"
    assert all("GPU" not in e.note for e in catalog.CATALOG.values())  # no hand-written hardware hints
