"""Crash-safe writes: logs keep every complete line, folder saves keep the previous folder
until the new one is complete."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tunelab import io, methods


def test_append_after_a_torn_line_starts_a_new_line(tmp_path):
    log = tmp_path / "metrics.jsonl"
    io.append_jsonl(log, {"step": 1})
    with open(log, "a") as fh:
        fh.write('{"step": 2, "lo')  # killed mid-write
    io.append_jsonl(log, {"step": 3})
    assert io.read_jsonl(log) == [{"step": 1}, {"step": 3}]
    assert log.read_text().count("\n") == 3


def test_read_jsonl_skips_what_does_not_parse(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"a": 1}\nnot json\n[1, 2]\n\n{"b": 2}\n')
    assert io.read_jsonl(log) == [{"a": 1}, {"b": 2}]
    assert io.read_jsonl(tmp_path / "missing.jsonl") == []


def test_atomic_write_leaves_no_temp_file(tmp_path):
    io.atomic_write_json(tmp_path / "sub" / "run.json", {"x": 1})
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["run.json"]


def _folder(path: Path, text: str) -> Path:
    path.mkdir()
    (path / "weights").write_text(text)
    return path


def test_atomic_folder_replaces_the_previous_one(tmp_path):
    target = _folder(tmp_path / "adapter", "old")
    with io.atomic_folder(target) as tmp:
        (tmp / "weights").write_text("new")
        (tmp / "nested").mkdir()
        (tmp / "nested" / "config").write_text("{}")
        assert (target / "weights").read_text() == "old"  # untouched until the new one is complete
    assert (target / "weights").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


def test_a_failed_swap_puts_the_previous_folder_back(tmp_path, monkeypatch):
    target = _folder(tmp_path / "adapter", "old")
    real_replace = os.replace

    def fail_on_the_new_folder(src, dst):
        if ".tmp-" in str(src):
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(io.os, "replace", fail_on_the_new_folder)
    with pytest.raises(OSError, match="disk full"), io.atomic_folder(target) as tmp:
        (tmp / "weights").write_text("new")
    assert (target / "weights").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


def test_a_swap_cut_in_half_by_a_crash_is_recovered(tmp_path):
    _folder(tmp_path / ".old-adapter", "old")  # crashed after moving the old one aside
    _folder(tmp_path / ".adapter.tmp-abc", "half")  # and a half-written save
    with io.atomic_folder(tmp_path / "adapter") as tmp:
        assert (tmp_path / "adapter" / "weights").read_text() == "old"
        (tmp / "weights").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]


class _Tokenizer:
    def __init__(self, fail: bool) -> None:
        self.fail = fail

    def save_pretrained(self, folder) -> None:
        (Path(folder) / "tokenizer.json").write_text("{}")
        if self.fail:
            raise OSError("No space left on device")


def test_save_atomically_keeps_the_old_adapter_when_saving_fails(tiny_model, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32),
                           LoraConfig(r=4, target_modules="all-linear"))
    target = tmp_path / "adapter"
    methods.save_atomically(methods.get("lora"), model, _Tokenizer(fail=False), target)
    saved = {p.name: p.read_bytes() for p in target.iterdir()}
    assert "adapter_model.safetensors" in saved

    with torch.no_grad():
        next(p for p in model.parameters() if p.requires_grad).add_(1.0)
    with pytest.raises(OSError, match="No space left"):
        methods.save_atomically(methods.get("lora"), model, _Tokenizer(fail=True), target)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == saved
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]
