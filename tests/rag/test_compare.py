"""The four-way comparison and the commands, on the tiny model and a hand-made LoRA run (an
adapter with non-zero weights, so tuned and base answers differ without training)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import write_jsonl
from tests.helpers import run_cli, save_random_lora
from tests.rag.helpers import write_docs
from tunelab.config import RunConfig
from tunelab.data.tokens import encode_prompt
from tunelab.inference.generate import generate
from tunelab.models.load import load_model, load_tokenizer, resolve
from tunelab.rag.compare import compare_rag
from tunelab.rag.index import build_index

MAX_NEW = 6
QUESTIONS = [
    ("How long is the warranty?", "Four years.", "warranty.md"),
    ("When was Bramble founded?", "In 2011.", "founding.txt"),
    ("How quickly does the kettle boil water?", "In 90 seconds.", "kettle.md"),
    ("Does the toaster have a bagel setting?", "Yes.", None),
]
SCORES = {"rougeL", "exact_match", "token_f1", "prompt_tokens", "answer_tokens", "seconds_per_answer",
          "api_usd_per_1k_answers", "self_hosted_usd_per_1k_answers", "one_time_usd"}


def write_lora_run(folder: Path, model_name: str) -> Path:
    cfg = RunConfig.model_validate({"model": {"name": model_name}, "method": {"name": "lora"},
                                    "eval": {"max_new_tokens": MAX_NEW, "dtype": "float32"}})
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(cfg.to_yaml())
    (folder / "run.json").write_text(json.dumps({"real_tokens": 50_000, "train_seconds": 720.0}))
    save_random_lora(load_model(resolve(model_name), "float32"), cfg, folder)
    return folder


@pytest.fixture(scope="module")
def setup(tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("compare")
    build_index([write_docs(folder / "docs")], folder / "idx", tokenizer=tiny_model, chunk_tokens=24, overlap=4)
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
             **({"source": s} if s else {})} for q, a, s in QUESTIONS]
    data = write_jsonl(folder / "test.jsonl", rows)
    return {"index": folder / "idx", "run": write_lora_run(folder / "run", tiny_model), "data": data,
            "model": tiny_model}


def test_four_systems_answer_the_same_rows_with_the_same_metrics(setup, tmp_path):
    result = compare_rag(setup["index"], setup["run"], setup["data"], k=2, report=tmp_path / "r.md")
    assert result["n"] == len(QUESTIONS)
    assert list(result["systems"]) == ["base", "base+rag", "tuned", "tuned+rag"]
    for scores in result["systems"].values():
        assert SCORES <= set(scores)
    s = result["systems"]
    assert s["base"]["prompt_tokens"] == s["tuned"]["prompt_tokens"]
    assert s["base+rag"]["prompt_tokens"] == s["tuned+rag"]["prompt_tokens"] > s["base"]["prompt_tokens"] + 20
    assert s["base+rag"]["api_usd_per_1k_answers"] > s["base"]["api_usd_per_1k_answers"]
    # training cost: 50,000 tokens at gpt-4o-mini's $0.003 per 1k; 720 s at $0.05 an hour
    assert result["training"] == {"tokens": 50_000, "seconds": 720.0, "api_usd": 0.15, "self_hosted_usd": 0.01}
    assert s["tuned"]["one_time_usd"]["api"] == 0.15 and s["base+rag"]["one_time_usd"]["api"] == 0.0
    assert result["retrieval"] == {"rows": 3, "recall@2": 1.0}  # the fourth row names no source
    assert len(result["verdict"]) == 4 and result["verdict"][0].split()[0] in result["systems"]
    report = (tmp_path / "r.md").read_text()
    assert "| tuned+rag |" in report and "## Verdict" in report
    assert json.loads((tmp_path / "r.json").read_text())["systems"] == result["systems"]


def test_the_base_systems_use_the_base_weights_and_the_tuned_ones_the_adapter(setup, tmp_path):
    result = compare_rag(setup["index"], setup["run"], setup["data"], k=2, report=tmp_path / "r.md")
    tok = load_tokenizer(resolve(setup["model"]))
    base = load_model(resolve(setup["model"]), "float32")
    prompts = [encode_prompt(tok, [{"role": "user", "content": q}]) for q, _, _ in QUESTIONS[:3]]
    plain = generate(base, tok, prompts, max_new_tokens=MAX_NEW)
    assert [sample["base"] for sample in result["samples"]] == plain
    assert [sample["tuned"] for sample in result["samples"]] != plain


def test_compare_rag_command_prints_the_documented_json(setup, capsys):
    code, out, err = run_cli(capsys, "compare-rag", "--index", setup["index"], "--run", setup["run"],
                             "--data", setup["data"], "--limit", "2", "--k", "1", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["n"] == 2 and set(result["systems"]) == {"base", "base+rag", "tuned", "tuned+rag"}
    for scores in result["systems"].values():
        assert {"rougeL", "exact_match", "prompt_tokens", "seconds_per_answer"} <= set(scores)
    assert (setup["run"] / "rag_compare.md").is_file()
    code, out, _ = run_cli(capsys, "compare-rag", "--index", setup["index"], "--run", setup["run"],
                           "--data", setup["data"], "--limit", "2")
    assert code == 0 and "tuned+rag" in out and "report:" in out


def test_compare_rag_names_bad_input(setup, tmp_path, capsys):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"messages": [{"role": "user", "content": "q"}]}])
    code, _, err = run_cli(capsys, "compare-rag", "--index", setup["index"], "--run", setup["run"], "--data", bad)
    assert code == 2 and str(bad) in err and "Traceback" not in err
    long = write_jsonl(tmp_path / "long.jsonl", [
        {"messages": [{"role": "user", "content": "short?"}, {"role": "assistant", "content": "a"}]},
        {"messages": [{"role": "user", "content": "warranty " * 1500}, {"role": "assistant", "content": "a"}]}])
    code, _, err = run_cli(capsys, "compare-rag", "--index", setup["index"], "--run", setup["run"], "--data", long)
    assert code == 2 and f"{long}:2: the question" in err
    code, _, err = run_cli(capsys, "compare-rag", "--index", setup["run"], "--run", setup["run"],
                           "--data", setup["data"])
    assert code == 2 and "not a tunelab index" in err
    code, _, err = run_cli(capsys, "compare-rag", "--index", setup["index"], "--run", setup["run"],
                           "--data", setup["data"], "--price-model", "nope")
    assert code == 2 and "gpt-4o-mini" in err


def test_index_and_ask_commands(setup, tmp_path, capsys):
    docs = write_docs(tmp_path / "docs")
    (docs / "broken.txt").write_bytes(b"\xff\xfe\x00")
    code, out, err = run_cli(capsys, "rag", "index", docs, tmp_path / "missing.md", "--out", tmp_path / "idx",
                             "--tokenizer", setup["model"], "--chunk-tokens", "32", "--overlap", "8")
    assert code == 0, err
    assert f"skipped {docs / 'broken.txt'}" in " ".join(out.split()) and "missing.md" in out
    code, out, err = run_cli(capsys, "rag", "ask", tmp_path / "idx", "--model", setup["model"], "--prompt",
                             "How long is the warranty?", "--k", "2", "--max-new-tokens", "4", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["sources"][0]["source"].endswith("warranty.md") and isinstance(result["answer"], str)
    code, out, _ = run_cli(capsys, "rag", "ask", tmp_path / "idx", "--run", setup["run"], "--prompt",
                           "When was Bramble founded?", "--max-new-tokens", "4")
    assert code == 0 and "founding.txt" in out
    code, _, err = run_cli(capsys, "rag", "ask", tmp_path / "idx", "--prompt", "q")
    assert code == 2 and "exactly one of --model and --run" in err
