"""The fast path: packs keep examples apart, the tiled loss equals the plain loss (and its
gradients), bf16 falls back cleanly, and fast and plain training reach the same loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import MEMO_ROWS, write_jsonl
from tunelab import api
from tunelab.config import build_config
from tunelab.data import dataset
from tunelab.models.load import load_model, load_tokenizer, resolve
from tunelab import device
from tunelab.inference.load import resolve_dtype
from tunelab.train import fastpath


@pytest.fixture(scope="module")
def tiny(tiny_model):
    ref = resolve(tiny_model)
    return load_model(ref).eval(), load_tokenizer(ref)


def _encoded(tok, tmp_path):
    rows = dataset.load_conversations(write_jsonl(tmp_path / "m.jsonl", MEMO_ROWS))
    return dataset.encode_split(tok, rows, 256, False).rows


def _varied(enc):
    """The examples with every other one cut to a third of its length ,
    so a batch has short and long examples to pack together."""
    from dataclasses import replace

    return [replace(e, input_ids=e.input_ids[:len(e.input_ids) // 3], labels=e.labels[:len(e.labels) // 3])
            if i % 2 else e for i, e in enumerate(enc)]


def _placements(packed, enc):
    """(row, start) of every example in a packed batch, found by its tokens and positions."""
    out = []
    for e in enc:
        n = len(e.input_ids)
        hits = [(r, s) for r in range(packed["input_ids"].shape[0]) for s in range(packed["input_ids"].shape[1] - n + 1)
                if packed["input_ids"][r, s:s + n].tolist() == e.input_ids and packed["position_ids"][r, s] == 0]
        out.append(hits[0])
    return out


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_packed_examples_cannot_see_each_other(tiny, tmp_path, impl):
    model, tok = tiny
    model.set_attn_implementation(impl)
    enc = _varied(_encoded(tok, tmp_path)[:6])
    packed = fastpath.PackingCollator(impl, tok.pad_token_id)([{"input_ids": e.input_ids, "labels": e.labels}
                                                               for e in enc])
    assert packed["input_ids"].shape[0] < len(enc)  # several examples share a row
    assert packed["input_ids"].shape[1] == max(len(e.input_ids) for e in enc)  # rows no longer than the longest
    with torch.no_grad():
        logits = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"],
                       attention_mask=packed["attention_mask"]).logits
    for e, (row, start) in zip(enc, _placements(packed, enc)):
        assert packed["labels"][row, start] == -100  # no example learns from the one before
        alone = model(input_ids=torch.tensor([e.input_ids])).logits[0]
        assert torch.allclose(logits[row, start:start + len(e.input_ids)], alone, atol=1e-5)


def test_packed_rows_give_the_loss_and_gradients_of_unpacked_rows(tiny_model, tmp_path):
    """The training loss (mean over label tokens, as the trainer computes it) and its gradients
    are the same, in fp32, whether a batch is packed or each example runs alone."""
    ref = resolve(tiny_model)
    tok = load_tokenizer(ref)
    enc = _varied(_encoded(tok, tmp_path)[:8])
    examples = [{"input_ids": e.input_ids, "labels": e.labels} for e in enc]

    packed_model = load_model(ref)
    batch = fastpath.PackingCollator("sdpa", tok.pad_token_id)(examples)
    logits = packed_model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    labels = batch["labels"][:, 1:]
    loss_packed = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                  ignore_index=-100, reduction="sum") / (labels != -100).sum()
    loss_packed.backward()

    plain_model = load_model(ref)
    total, count = 0.0, 0
    for e in enc:
        lab = torch.tensor(e.labels[1:])
        out = plain_model(input_ids=torch.tensor([e.input_ids])).logits[0, :-1]
        total = total + F.cross_entropy(out, lab, ignore_index=-100, reduction="sum")
        count += int((lab != -100).sum())
    loss_plain = total / count
    loss_plain.backward()

    assert batch["labels"].ne(-100).sum() == count  # the same loss-bearing tokens
    assert torch.allclose(loss_packed, loss_plain, atol=1e-5)
    for (name, a), (_, b) in zip(packed_model.named_parameters(), plain_model.named_parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-5), name


def test_rows_are_filled_longest_first_and_hold_every_example_once():
    lengths = [50, 10, 40, 30, 20, 50, 5]
    rows = fastpath.pack_rows(lengths)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= 50 for row in rows)
    assert sorted(sorted(lengths[i] for i in row) for row in rows) == [[5], [10, 40], [20, 30], [50], [50]]
    assert fastpath.pack_rows([7]) == [[0]]


def test_tiled_loss_and_its_gradients_equal_the_plain_loss(tiny_model, tmp_path):
    from trl.trainer.utils import add_fused_lm_head

    ref = resolve(tiny_model)
    tok = load_tokenizer(ref)
    enc = _encoded(tok, tmp_path)[0]
    ids, labels = torch.tensor([enc.input_ids]), torch.tensor([enc.labels])

    plain = load_model(ref)
    logits = plain(input_ids=ids).logits
    loss_plain = F.cross_entropy(logits[0, :-1], labels[0, 1:], ignore_index=-100)
    loss_plain.backward()

    fused = load_model(ref)
    add_fused_lm_head(fused)
    out = fused(input_ids=ids, labels=labels, fused_lm_head=True)
    loss_fused = -out.log_probs.sum() / out.label_mask.sum()
    loss_fused.backward()

    assert torch.allclose(loss_fused, loss_plain, atol=1e-6)
    for (name, a), (_, b) in zip(plain.named_parameters(), fused.named_parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-6), name


def test_bf16_falls_back_to_fp32_where_unsupported(monkeypatch):
    monkeypatch.setattr(device, "bf16_available", lambda: False)
    assert device.use_bf16("auto") is False
    assert resolve_dtype("auto", "lora") == "float32"
    monkeypatch.setattr(device, "bf16_available", lambda: True)
    assert device.use_bf16("auto") is True
    assert resolve_dtype("auto", "lora") == "bfloat16"
    assert resolve_dtype("auto", "full") == "float32"  # full training keeps fp32 master weights
    assert device.use_bf16("off") is False


def test_checkpointing_only_when_activations_do_not_fit(tiny):
    model, _ = tiny
    small = fastpath.activation_bytes(model.config, batch_tokens=800, seq_len=100, bf16=True)
    assert not fastpath.needs_checkpointing(model.config, 800, 100, True, budget=small * 2)
    assert fastpath.needs_checkpointing(model.config, 800, 100, True, budget=small / 2)


def test_dpo_recomputes_activations_on_a_cpu_unless_told_otherwise():
    assert fastpath.dpo_checkpointing("auto", on_gpu=False)  # faster there: see its docstring
    assert not fastpath.dpo_checkpointing("auto", on_gpu=True)
    assert not fastpath.dpo_checkpointing("off", on_gpu=False) and fastpath.dpo_checkpointing("on", on_gpu=True)


@pytest.mark.parametrize("bf16", ["off"])
def test_fast_and_plain_paths_reach_the_same_loss(tiny_model, tmp_path, bf16):
    data = write_jsonl(tmp_path / "m.jsonl", MEMO_ROWS)
    losses = {}
    for fast in (True, False):
        cfg = build_config(overrides={"model.name": tiny_model, "data.train": str(data), "data.val": str(data),
                                      "train.epochs": 60},
                           sets=["train.lr=1e-2", "train.batch_size=8", "train.scheduler=constant",
                                 f"train.bf16={bf16}", f"train.fast={str(fast).lower()}", "train.warmup_ratio=0",
                                 "method.lora.dropout=0"])
        run = api.train(cfg, out=tmp_path / f"fast-{fast}")
        losses[fast] = run.summary()["eval_loss"]
    # both memorise the set; the exact trajectories differ (packed vs padded sums round differently)
    assert losses[True] < 0.2 and losses[False] < 0.2
    assert losses[True] == pytest.approx(losses[False], abs=0.1)
