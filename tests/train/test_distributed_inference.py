"""Inference on a model larger than one GPU: without --device-map, eval, chat and serve load a
model on this process's GPU when its weights fit in 90% of it and spread its layers over every
GPU and then CPU memory (device_map "auto") when they do not. A patched memory report stands in
for the GPU here; scripts/gpu_check.py loads with "auto" on real GPUs."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from tests.helpers import run_cli, save_random_lora
from tunelab.models import load as model_load
from tunelab.models.load import default_device_map, resolve


@pytest.fixture
def gpu(monkeypatch):
    """Make torch report GPUs of ``total_bytes`` each."""
    def install(total_bytes: float) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        report = SimpleNamespace(total_memory=total_bytes)
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: report)

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    return install


def test_weights_larger_than_the_gpu_are_spread_by_default(gpu, monkeypatch):
    big, seven = resolve("llama-3.1-70b-instruct"), resolve("qwen2.5-7b-instruct")
    gpu(80e9)
    assert default_device_map(big, "bfloat16") == "auto"  # 141 GB of bf16 weights
    assert default_device_map(big, "bfloat16", quantized=True) == {"": 0}  # 35 GB in 4-bit: one GPU
    assert default_device_map(seven, "float32") == {"": 0}  # 30 GB
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert default_device_map(seven, "bfloat16") == {"": 1}  # each process of a launch on its own GPU
    gpu(24e9)
    assert default_device_map(seven, "float32") == "auto"  # 30 GB > 90% of 24 GB
    assert default_device_map(seven, "bfloat16") == {"": 1}  # 15 GB


def test_chat_serve_and_eval_load_through_the_default_placement(monkeypatch, capsys, tiny_model, tmp_path):
    """With no --device-map, every inference path asks default_device_map where the model goes
    and loads it there (here the answer is "auto", which on this CPU-only machine is the CPU)."""
    from tunelab.config import RunConfig
    from tunelab.evaluate import sides
    from tunelab.rundir import RunDir
    from tunelab.serve.engine import Engine

    asked = []

    def placement(ref, dtype, quantized=False):
        asked.append(ref.name)
        return "auto"

    monkeypatch.setattr(model_load, "default_device_map", placement)
    code, answer, err = run_cli(capsys, "chat", "--model", tiny_model, "--prompt", "Code word 3?",
                                "--max-new-tokens", "3")
    assert code == 0 and answer.strip(), err
    assert asked == [tiny_model]
    Engine(tiny_model, {})
    assert asked == [tiny_model] * 2

    cfg = RunConfig.model_validate({"model": {"name": tiny_model}})
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(cfg.to_yaml())
    save_random_lora(model_load.load_model(resolve(tiny_model), device_map="cpu"), cfg, run)
    base, tuned, _ = sides.load(RunDir(run), "float32")
    assert asked == [tiny_model] * 3  # one base, shared by the base and the tuned side
    assert {str(p.device) for p in tuned.model.parameters()} == {"cpu"}
    code, _, err = run_cli(capsys, "chat", "--model", tiny_model, "--prompt", "hi", "--device-map", "auto")
    assert code == 0 and asked == [tiny_model] * 3, err  # asked for: no default consulted
