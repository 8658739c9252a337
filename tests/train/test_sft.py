"""The training loop on the tiny model: loss falls, the adapter reloads with plain peft."""

from __future__ import annotations

import json

import pytest
import torch

from tunelab import api
from tunelab.config import build_config
from tunelab.errors import RunError

FAST = ["train.lr=1e-2", "train.batch_size=8", "train.scheduler=constant", "train.logging_steps=1", "train.bf16=off", "method.lora.r=16",
        "method.lora.dropout=0.0"]


@pytest.fixture(scope="module")
def trained(tiny_model, tmp_path_factory):
    from tests.conftest import MEMO_ROWS, write_jsonl

    folder = tmp_path_factory.mktemp("sft")
    data = write_jsonl(folder / "memo.jsonl", MEMO_ROWS)
    cfg = build_config(overrides={"model.name": tiny_model, "data.train": str(data), "data.val": str(data),
                                  "train.epochs": 60}, sets=FAST)  # well past the margin: any rounding memorises
    return api.train(cfg, out=folder / "run")


def test_loss_falls_on_memorisation(trained):
    metrics = trained.read_metrics()
    losses = [m["loss"] for m in metrics if "loss" in m]
    evals = [m["eval_loss"] for m in metrics if "eval_loss" in m]
    assert losses[-1] < 0.5 * losses[0]
    assert evals[-1] < 0.5 * evals[0]


def test_run_directory_layout(trained):
    for rel in ("config.yaml", "adapter/adapter_config.json", "adapter/adapter_model.safetensors",
                "data/train.jsonl", "data/val.jsonl", "data/data_card.json", "metrics.jsonl", "run.json"):
        assert (trained.path / rel).is_file(), rel
    assert list(trained.checkpoints.glob("checkpoint-*"))
    card = json.loads((trained.data / "data_card.json").read_text())
    assert card["splits"]["train"]["rows"] == 8
    summary = trained.summary()
    assert summary["trainable"]["trainable"] < summary["trainable"]["total"]


def test_adapter_reloads_with_plain_peft_and_gives_identical_logits(trained, tiny_model):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ids = torch.tensor([[5, 17, 33, 70, 101, 9]])
    ours = api.load(trained.path).model
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    plain = PeftModel.from_pretrained(base, str(trained.adapter)).eval()
    with torch.no_grad():
        a, b = ours.eval()(ids).logits, plain(ids).logits
    assert torch.equal(a, b)
    with torch.no_grad(), plain.disable_adapter():
        assert not torch.allclose(plain(ids).logits, b)  # training moved the model


def test_tuned_model_answers_from_memory(trained):
    loaded = api.load(trained.path)
    answer = api.reply(loaded, [{"role": "user", "content": "Code word 3?"}], max_new_tokens=8)
    assert answer == "delta"


def test_resume_continues_from_last_checkpoint(trained, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained.path, copy)
    last = max(int(p.name.split("-")[1]) for p in (copy / "checkpoints").glob("checkpoint-*"))
    api.train(None, resume=copy)
    assert json.loads((copy / "run.json").read_text())["steps"] == last


def test_resume_without_checkpoint_is_an_error(trained, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained.path, copy)
    shutil.rmtree(copy / "checkpoints")
    with pytest.raises(RunError, match="no checkpoint"):
        api.train(None, resume=copy)


def test_existing_run_directory_is_never_overwritten(trained, tiny_model, memo_file):
    before = (trained.adapter / "adapter_model.safetensors").read_bytes()
    cfg = build_config(overrides={"model.name": tiny_model, "data.train": str(memo_file)})
    with pytest.raises(RunError, match="already exists"):
        api.train(cfg, out=trained.path)
    assert (trained.adapter / "adapter_model.safetensors").read_bytes() == before
