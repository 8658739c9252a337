"""`tunelab export`: adapters copy, mergeable methods merge into a plain transformers model."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import MEMO_ROWS, write_jsonl
from tests.helpers import run_cli

IDS = torch.tensor([[5, 17, 33, 70, 101]])


def _train(capsys, tiny_model, folder, method):
    data = write_jsonl(folder / "memo.jsonl", MEMO_ROWS)
    code, _, err = run_cli(capsys, "train", "--model", tiny_model, "--method", method, "--data", data,
                           "--out", folder / method, "--max-steps", "3", "--lr", "1e-2", "--set", "train.bf16=off")
    assert code == 0, err
    return folder / method


def test_merge_writes_a_plain_transformers_model_with_the_same_logits(capsys, tiny_model, tmp_path):
    from transformers import AutoModelForCausalLM

    from tunelab import api

    run = _train(capsys, tiny_model, tmp_path, "lora")
    code, out, err = run_cli(capsys, "export", run, "--out", tmp_path / "merged", "--merge")
    assert code == 0, err
    assert "merged model" in out
    assert (tmp_path / "merged" / "model.safetensors").is_file()
    assert (tmp_path / "merged" / "tokenizer.json").is_file()
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    tuned = api.load(run).model.eval()
    with torch.no_grad():
        assert torch.allclose(merged(IDS).logits, tuned(IDS).logits, atol=1e-4)


def test_export_without_merge_copies_the_adapter(capsys, tiny_model, tmp_path):
    run = _train(capsys, tiny_model, tmp_path, "prefix")
    code, out, err = run_cli(capsys, "export", run, "--out", tmp_path / "ad")
    assert code == 0, err
    assert (tmp_path / "ad" / "adapter_config.json").is_file()


@pytest.mark.parametrize("method", ["prefix", "adapter"])
def test_merge_of_a_method_that_cannot_merge_is_a_clear_error(capsys, tiny_model, tmp_path, method):
    run = _train(capsys, tiny_model, tmp_path, method)
    code, _, err = run_cli(capsys, "export", run, "--out", tmp_path / "m", "--merge")
    assert code == 2 and err.startswith("error: ") and "cannot be merged" in err
    assert not (tmp_path / "m").exists()


def test_export_refuses_a_non_empty_folder(capsys, tiny_model, tmp_path):
    run = _train(capsys, tiny_model, tmp_path, "lora")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    code, _, err = run_cli(capsys, "export", run, "--out", tmp_path / "taken")
    assert code == 2 and "not empty" in err
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"


def test_qlora_without_working_bitsandbytes_is_a_clear_error(capsys, tiny_model, tmp_path, monkeypatch):
    import bitsandbytes.functional as bnbf

    def broken(*_a, **_k):
        raise RuntimeError("no 4-bit kernel for this CPU")

    monkeypatch.setattr(bnbf, "quantize_4bit", broken)
    data = write_jsonl(tmp_path / "memo.jsonl", MEMO_ROWS)
    code, _, err = run_cli(capsys, "train", "--model", tiny_model, "--method", "qlora", "--data", data,
                           "--out", tmp_path / "q")
    assert code == 2 and "qlora needs bitsandbytes" in err and "--method lora" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "q").exists()  # nothing written for a run that cannot start
