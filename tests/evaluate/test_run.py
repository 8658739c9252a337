"""Base vs tuned on a run directory: each side computes with its own weights, eval.json has one
shape, and the base side is reused only where nothing it depends on changed.

The runs are written by hand (config, and an adapter or whole model with known non-zero
changes), so these tests need no training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import MEMO_ROWS, write_jsonl
from tests.helpers import save_random_lora
from tunelab.config import RunConfig
from tunelab.data import dataset
from tunelab.data.formats import prompt_and_reference
from tunelab.data.tokens import encode_prompt
from tunelab.evaluate import run as evaluation
from tunelab.evaluate import sides
from tunelab.inference.generate import generate_and_score
from tunelab.inference.load import load_run
from tunelab.models.load import load_model, load_tokenizer, resolve
from tunelab.rundir import open_run

MAX_NEW = 6
SCORES = {"loss", "perplexity", "rougeL", "bleu", "exact_match", "token_f1"}


def write_run(folder: Path, model_name: str, method: str, **eval_settings) -> Path:
    """A run directory whose trained weights visibly differ from the base: a LoRA adapter with
    random (non-zero) B matrices, or (full) a whole model with a perturbed LM head."""
    cfg = RunConfig.model_validate({"model": {"name": model_name}, "method": {"name": method},
                                    "eval": {"max_new_tokens": MAX_NEW, "samples": len(MEMO_ROWS),
                                             "probe_questions": 4, **eval_settings}})
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(cfg.to_yaml())
    model = load_model(resolve(model_name), "float32")
    if method == "full":
        torch.manual_seed(1)
        with torch.no_grad():
            model.lm_head.weight.add_(torch.randn_like(model.lm_head.weight))
        model.save_pretrained(folder / "model")
        return folder
    save_random_lora(model, cfg, folder)
    return folder


@pytest.fixture(scope="module")
def lora_run(tiny_model, tmp_path_factory) -> Path:
    return write_run(tmp_path_factory.mktemp("eval") / "lora", tiny_model, "lora")


@pytest.fixture
def rows(tmp_path) -> Path:
    return write_jsonl(tmp_path / "memo.jsonl", MEMO_ROWS)


def answers_and_loss(model, tok, data: Path) -> tuple[list[str], float]:
    """Greedy answers and reference loss of ``model`` on ``data``, computed on their own."""
    messages = dataset.load_conversations(data)
    prompt_ids = [encode_prompt(tok, prompt_and_reference(m)[0]) for m in messages]
    continuations = evaluation.continuations(tok, messages, prompt_ids, 1024)
    return generate_and_score(model, tok, prompt_ids, continuations, max_new_tokens=MAX_NEW, batch_size=128)


@pytest.mark.parametrize("method", ["lora", "full"])
def test_each_side_computes_with_its_own_weights(tmp_path, tiny_model, rows, method):
    """The base side's answers are the plain base model's and the tuned side's are the unmerged
    tuned model's: the adapter is folded into the shared weights only after the base side is done."""
    run = write_run(tmp_path / method, tiny_model, method)
    result = evaluation.evaluate_run(run, rows, forgetting=False, bias=False, fresh_base=True)
    tok = load_tokenizer(resolve(tiny_model))
    base_answers, base_loss = answers_and_loss(load_model(resolve(tiny_model), "float32"), tok, rows)
    tuned_answers, tuned_loss = answers_and_loss(load_run(run, "eval", "float32").model, tok, rows)
    assert base_answers != tuned_answers  # the check below can tell the two sides apart
    assert [s["base"] for s in result["samples"]] == base_answers
    assert [s["tuned"] for s in result["samples"]] == tuned_answers
    assert result["base"]["loss"] == round(base_loss, 4)
    assert result["tuned"]["loss"] == pytest.approx(round(tuned_loss, 4), abs=2e-4)  # merged vs unmerged sums


def test_sides_come_base_first_and_only_the_tuned_side_of_an_adapter_merges(lora_run, tmp_path, tiny_model):
    base, tuned, loaded = sides.load(open_run(lora_run), "float32")
    assert (base.name, tuned.name) == ("base", "tuned")
    assert base.model is tuned.model is loaded.model and loaded.is_adapter
    assert not base.merge and tuned.merge
    ids = torch.tensor([encode_prompt(loaded.tokenizer, [{"role": "user", "content": "Code word 1?"}])])
    plain = load_model(resolve(tiny_model), "float32")(ids).logits
    with torch.no_grad(), base.context():  # the adapter is off for the base side only
        assert torch.allclose(base.model_ready()(ids).logits, plain, atol=1e-5)
    with torch.no_grad():
        tuned_logits = loaded.model(ids).logits
        assert not torch.allclose(tuned_logits, plain, atol=1e-2)
        merged = tuned.model_ready()
        assert torch.allclose(merged(ids).logits, tuned_logits, atol=1e-4)
    assert not any("lora_" in name for name, _ in merged.named_parameters())
    full = write_run(tmp_path / "full", tiny_model, "full")
    base, tuned, loaded = sides.load(open_run(full), "float32")
    assert base.model is not tuned.model and not base.merge and not tuned.merge


def test_in_bf16_the_adapter_stays_beside_the_weights_in_their_dtype(lora_run, rows):
    loaded = load_run(lora_run, "eval", "bfloat16")
    folded = sides.fold_adapter(loaded.model, "bfloat16")
    names = [name for name, _ in folded.named_parameters()]
    assert any("lora_" in name for name in names)
    assert {p.dtype for p in folded.parameters()} == {torch.bfloat16}
    result = evaluation.evaluate_run(lora_run, rows, limit=2, forgetting=False, bias=False, fresh_base=True)
    assert result["n"] == 2 and set(result["tuned"]) == SCORES


def test_eval_json_has_one_shape_whatever_was_there_before(lora_run, rows, tiny_model):
    run = lora_run
    (run / "eval.json").write_text(json.dumps({"stage": "dpo", "preference_accuracy": 0.75}))
    (run / "run.json").write_text(json.dumps({"model": tiny_model, "method": "lora", "stage": "dpo",
                                              "held_out": {"preference_accuracy": 0.75, "held_out_pairs": 4}}))
    result = evaluation.evaluate_run(run, rows, limit=4, judge=tiny_model)
    saved = json.loads((run / "eval.json").read_text())
    assert set(saved) == {"n", "data", "base", "tuned", "base_reused", "overfitting", "samples", "forgetting",
                          "bias", "judge", "seconds", "plots"}
    assert {k: v for k, v in saved.items() if k != "plots"} == result
    assert set(result["base"]) == set(result["tuned"]) == SCORES
    assert result["forgetting"]["base"]["questions"] == 4
    judged = result["judge"]
    assert judged["judge"] == tiny_model and judged["wins"] + judged["ties"] + judged["losses"] + judged["unclear"] == 4
    report = (run / "report.md").read_text()
    for section in ("Base vs tuned", "Catastrophic forgetting", "Bias", "Pairwise judge",
                    "Held out during training (dpo)", "Sample 1"):
        assert f"## {section}" in report
    assert "| preference_accuracy | 0.75 |" in report and "Preference stage" not in report


def test_the_base_side_is_reused_until_asked_to_compute_it_again(lora_run, rows, tmp_path, monkeypatch):
    """(The bias probes are reused the same way; `tunelab eval`'s tests show it.)"""
    monkeypatch.setenv("TUNELAB_HOME", str(tmp_path / "home"))
    events: list[dict] = []
    first = evaluation.evaluate_run(lora_run, rows, limit=3, bias=False)
    second = evaluation.evaluate_run(lora_run, rows, limit=3, bias=False, events=events.append)
    assert first["base_reused"] == [] and second["base_reused"] == ["task", "forgetting"]
    assert {e["side"] for e in events if e["event"] == "eval_side"} == {"task (tuned)", "general QA (tuned)"}
    fresh = evaluation.evaluate_run(lora_run, rows, limit=3, bias=False, fresh_base=True)
    assert fresh["base_reused"] == []
    for other in (second, fresh):
        for key in ("base", "tuned", "forgetting", "samples"):
            assert other[key] == first[key]
    other_rows = evaluation.evaluate_run(lora_run, rows, limit=2, bias=False)
    assert other_rows["base_reused"] == ["forgetting"]  # the probes do not depend on the rows
