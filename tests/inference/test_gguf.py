"""`tunelab export --format gguf`: the file loads back through transformers' GGUF loader and
answers as the merged model does.

Stated tolerance, on the logits of the same chat prompts: f16 within 1% of the largest logit
(float16 rounding of the weights), q8_0 within 5% (8-bit blocks of 32); greedy answers equal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import run_cli

TOLERANCE = {"f16": 0.01, "q8_0": 0.05}  # max |logit difference| / max |logit|
QUESTIONS = ["What is the capital of France?", "Monday at 9 AM, room 4", "Turn this note into a calendar entry."]


def write_lora_run(folder: Path, model_name: str, scale: float = 0.1) -> Path:
    """A run directory with a random LoRA adapter whose B matrices are drawn at ``scale`` (about
    what a short fine-tune leaves), so the merged model differs from the base."""
    from tunelab import methods
    from tunelab.config import RunConfig
    from tunelab.models.load import load_model, resolve

    cfg = RunConfig.model_validate({"model": {"name": model_name}, "method": {"name": "lora"}})
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(cfg.to_yaml())
    record = methods.get("lora")
    torch.manual_seed(1)
    model = record.apply(load_model(resolve(model_name), "float32"), record.settings(cfg.method))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, scale)
    methods.save(record, model, folder / "adapter")
    return folder


@pytest.fixture(scope="module")
def lora_run(tiny_model, tmp_path_factory) -> Path:
    return write_lora_run(tmp_path_factory.mktemp("gguf") / "memo-lora", tiny_model)


def merged_reference(run: Path, folder: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunelab.inference.export import export_run
    from tunelab.rundir import open_run

    export_run(open_run(run), folder, merge=True)
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval(), AutoTokenizer.from_pretrained(folder)


def prompts(tokenizer) -> list[torch.Tensor]:
    return [torch.tensor([tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                                        tokenize=True, return_dict=True)["input_ids"]])
            for q in QUESTIONS]


def load_gguf(folder: Path, gguf_file: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32).eval(),
            AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file))


def greedy(model, ids: torch.Tensor, new_tokens: int, pad: int) -> list[int]:
    return model.generate(ids, max_new_tokens=new_tokens, do_sample=False, pad_token_id=pad)[0, ids.shape[1]:].tolist()


def compare(reference, ref_tok, loaded, tokenizer, new_tokens: int) -> dict:
    """On every question: the worst logit difference relative to the largest logit, both
    models' greedy answers, and, along the reference's answer, how many next-token choices
    were decisive (top-two gap above twice the logit difference there) and how many of
    those the GGUF model chose differently."""
    result = {"worst": 0.0, "ours": [], "theirs": [], "decisive": 0, "disagree": 0}
    with torch.no_grad():
        for ids, gguf_ids in zip(prompts(ref_tok), prompts(tokenizer)):
            assert gguf_ids.tolist() == ids.tolist()  # the GGUF tokenizer and chat template encode alike
            answer = greedy(reference, ids, new_tokens, ref_tok.pad_token_id)
            result["ours"].append(answer)
            result["theirs"].append(greedy(loaded, ids, new_tokens, ref_tok.pad_token_id))
            full = torch.tensor([ids[0].tolist() + answer])
            a, b = reference(full).logits[0, ids.shape[1] - 1:], loaded(full).logits[0, ids.shape[1] - 1:]
            result["worst"] = max(result["worst"], float((a - b).abs().max() / a.abs().max()))
            top2 = a.topk(2, dim=-1).values
            decisive = (top2[:, 0] - top2[:, 1]) > 2 * (a - b).abs().max(dim=-1).values
            result["decisive"] += int(decisive.sum())
            result["disagree"] += int((decisive & (a.argmax(-1) != b.argmax(-1))).sum())
    return result


@pytest.mark.parametrize("quant", ["f16", "q8_0"])
def test_gguf_export_answers_as_the_merged_model(capsys, lora_run, tmp_path, quant):
    from gguf import GGUFReader

    reference, ref_tok = merged_reference(lora_run, tmp_path / "merged")
    out = tmp_path / "gguf"
    code, text, err = run_cli(capsys, "export", lora_run, "--out", out, "--format", "gguf", "--quant", quant)
    assert code == 0, err
    name = f"memo-lora-{quant}.gguf"
    said = " ".join(text.split())  # the console wraps long lines
    assert f"wrote gguf of lora run to {out}" in said and f"{name}: 21 tensors, {quant}" in said
    assert sorted(p.name for p in out.iterdir()) == ["Modelfile", name]

    found = compare(reference, ref_tok, *load_gguf(out, name), new_tokens=12)
    assert found["worst"] <= TOLERANCE[quant], found
    # a random tiny model has near-ties that any rounding flips: every choice that was not a
    # tie within the tolerance is the same, and most choices were not ties
    assert found["disagree"] == 0 and found["decisive"] >= len(QUESTIONS) * 13 // 2, found

    reader = GGUFReader(out / name)
    assert reader.fields["general.architecture"].contents() == "llama"
    assert reader.fields["tokenizer.chat_template"].contents() == ref_tok.chat_template
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["blk.0.attn_norm.weight"] == "F32" and "output.weight" in types  # the tiny model's head is untied
    assert types["blk.1.ffn_down.weight"] == ("Q8_0" if quant == "q8_0" else "F16")
    modelfile = (out / "Modelfile").read_text()
    assert modelfile.startswith(f"FROM ./{name}\n") and "<|im_start|>{{ .Role }}" in modelfile
    assert 'PARAMETER stop "<|im_end|>"' in modelfile


def test_q_and_k_rows_go_to_ggml_order_that_the_transformers_loader_undoes():
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    from tunelab.inference.gguf import to_ggml_rotary

    heads, kv_heads, head_dim, hidden = 4, 2, 8, 32
    q = np.random.default_rng(0).normal(size=(heads * head_dim, hidden)).astype(np.float32)
    k = np.random.default_rng(1).normal(size=(kv_heads * head_dim, hidden)).astype(np.float32)
    undo = LlamaTensorProcessor(config={"num_attention_heads": heads, "num_key_value_heads": kv_heads})
    assert not np.array_equal(to_ggml_rotary(q, heads), q)
    assert np.array_equal(undo.process(to_ggml_rotary(q, heads), "blk.0.attn_q.weight").weights, q)
    assert np.array_equal(undo.process(to_ggml_rotary(k, kv_heads), "blk.0.attn_k.weight").weights, k)


def test_gguf_of_a_method_that_cannot_merge_or_an_unknown_quant_is_one_line(capsys, tiny_model, lora_run, tmp_path):
    prefix = tmp_path / "prefix-run"
    code, _, err = run_cli(capsys, "train", "--model", tiny_model, "--method", "prefix", "--data",
                           _memo(tmp_path), "--out", prefix, "--max-steps", "1", "--set", "train.bf16=off",
                           "--set", "train.lr=1e-3", "--set", "train.batch_size=4", "--set", "train.epochs=1")
    assert code == 0, err
    code, _, err = run_cli(capsys, "export", prefix, "--out", tmp_path / "g", "--format", "gguf")
    assert code == 2 and err.startswith("error: ") and "cannot be merged" in err and err.strip().count("\n") == 0
    code, _, err = run_cli(capsys, "export", lora_run, "--out", tmp_path / "g", "--format", "gguf", "--quant", "q4_k")
    assert code == 2 and "--quant 'q4_k': expected one of f16, q8_0" in err
    assert not (tmp_path / "g").exists()


def test_a_model_that_is_not_llama_is_refused_by_name():
    from transformers import Qwen2Config

    from tunelab.errors import ConfigError
    from tunelab.inference.gguf import check_model

    with pytest.raises(ConfigError, match="Llama-architecture models only; this one is 'qwen2'"):
        check_model(Qwen2Config())


def _memo(folder: Path) -> Path:
    from tests.conftest import MEMO_ROWS, write_jsonl

    return write_jsonl(folder / "memo.jsonl", MEMO_ROWS)


@pytest.mark.slow
@pytest.mark.parametrize("quant", ["f16", "q8_0"])
def test_bundled_smollm2_gguf_answers_as_the_merged_model(tmp_path, quant):
    """The real model: f16 gives the same greedy answers token for token; q8_0's 8-bit rounding
    can flip a near-tie some tokens into an answer (seen after 10 identical tokens), so there
    every choice that is not a tie within the logit difference must be the same."""
    from tunelab.inference.export import export_run
    from tunelab.models.catalog import DEFAULT_MODEL
    from tunelab.rundir import open_run

    run = write_lora_run(tmp_path / "smol-lora", DEFAULT_MODEL)
    reference, ref_tok = merged_reference(run, tmp_path / "merged")
    result = export_run(open_run(run), tmp_path / quant, fmt="gguf", quant=quant)
    found = compare(reference, ref_tok, *load_gguf(tmp_path / quant, result["gguf"]), new_tokens=16)
    assert found["worst"] <= TOLERANCE[quant], found
    if quant == "f16":
        assert found["theirs"] == found["ours"]
    # 8-bit rounding leaves fewer choices clear of ties in a 49k vocabulary (23 of 51 seen for q8_0)
    assert found["disagree"] == 0 and found["decisive"] >= len(QUESTIONS) * 17 // 3, found
