"""The CLI as a user sees it: output, JSON shapes, and one-line errors with exit 2."""

from __future__ import annotations

import json

import pytest

from tests.conftest import MEMO_ROWS, write_jsonl
from tests.helpers import run_cli

TINY_TRAIN = ["--epochs", "2", "--batch-size", "4", "--set", "train.bf16=off"]


def test_models_lists_the_catalog(capsys):
    code, out, _ = run_cli(capsys, "models", "--json")
    rows = json.loads(out)
    assert code == 0
    names = [r["name"] for r in rows]
    assert names[0] == "smollm2-135m-instruct"
    bundled = rows[0]
    assert bundled["context"] == 8192 and bundled["licence"] == "Apache-2.0"
    assert "100–500" in bundled["guidance"]
    assert any("thousands" in r["guidance"] or "500–5000" in r["guidance"] for r in rows if r["params_b"] > 60)


def test_data_check_json_shape_and_exit_code(capsys, tmp_path, tiny_model):
    good = write_jsonl(tmp_path / "good.jsonl", MEMO_ROWS)
    code, out, _ = run_cli(capsys, "data", "check", good, "--model", tiny_model, "--json", "--max-length", "12")
    report = json.loads(out)
    assert code == 0
    assert report["rows"] == 8 and report["format"] == "instruction" and report["errors"] == []
    assert set(report["tokens"]) == {"total", "mean", "p95", "max"}
    assert report["over_length"] == sum(1 for _ in MEMO_ROWS)  # every row is longer than 12 tokens
    bad = write_jsonl(tmp_path / "bad.jsonl", [*MEMO_ROWS[:2], "{oops", {"instruction": "q", "output": ""}])
    code, out, _ = run_cli(capsys, "data", "check", bad, "--model", tiny_model, "--json")
    assert code == 1
    assert [(e["line"], e["kind"]) for e in json.loads(out)["errors"]] == [(3, "invalid_json"), (4, "empty_output")]


def test_data_check_text_report(capsys, tmp_path, tiny_model):
    bad = write_jsonl(tmp_path / "bad.jsonl", [*MEMO_ROWS, "[]", "[]"])
    code, out, _ = run_cli(capsys, "data", "check", bad, "--model", tiny_model)
    assert code == 1
    assert "not_object" in out and "9, 10" in out and "guidance" in out


@pytest.fixture(scope="module")
def cli_run(tiny_model, tmp_path_factory):
    """A run trained through the CLI on the memorisation set."""
    import sys

    folder = tmp_path_factory.mktemp("cli")
    data = write_jsonl(folder / "memo.jsonl", MEMO_ROWS)
    from tunelab.cli import main

    argv = sys.argv
    sys.argv = ["tunelab", "train", "--model", tiny_model, "--data", str(data), "--val", str(data),
                "--out", str(folder / "run"), "--lr", "1e-2", *TINY_TRAIN]
    try:
        main()
    except SystemExit as exc:
        assert exc.code in (0, None)
    finally:
        sys.argv = argv
    return folder


def test_eval_json_shape_and_files(capsys, cli_run):
    code, out, _ = run_cli(capsys, "eval", cli_run / "run", "--data", cli_run / "memo.jsonl", "--limit", "4", "--json")
    assert code == 0
    result = json.loads(out)
    assert result["n"] == 4
    for side in ("base", "tuned"):
        assert set(result[side]) == {"loss", "perplexity", "rougeL", "bleu", "exact_match", "token_f1"}
    assert result["tuned"]["loss"] < result["base"]["loss"]
    assert set(result["forgetting"]) == {"base", "tuned", "delta"}
    assert set(result["bias"]["axes"]) == {"gender", "nationality", "religion", "age"}
    assert "flag" in result["overfitting"]
    saved = json.loads((cli_run / "run" / "eval.json").read_text())
    assert saved["base"] == result["base"] and len(saved["samples"]) == 3
    report = (cli_run / "run" / "report.md").read_text()
    page = (cli_run / "run" / "report.html").read_text()
    for section in ("Base vs tuned", "Overfitting", "Catastrophic forgetting", "Bias", "Data", "Sample 1"):
        assert f"## {section}" in report and f"<h2>{section}" in page
    assert "![loss curves](plots/loss.png)" in report and "data:image/png;base64," in page


def test_eval_reuses_the_base_side_of_an_earlier_eval(capsys, cli_run, tmp_path):
    import os
    from pathlib import Path

    rows = write_jsonl(tmp_path / "few.jsonl", MEMO_ROWS[:3])

    def evaluate(data, *flags) -> dict:
        code, out, err = run_cli(capsys, "eval", cli_run / "run", "--data", data, "--no-forgetting", "--json", *flags)
        assert code == 0, err
        return json.loads(out)

    first = evaluate(rows)
    assert "task" not in first["base_reused"]  # (the rows-independent bias probes may be there already)
    second = evaluate(rows)
    assert second["base_reused"] == ["task", "bias"]
    assert second["base"] == first["base"] and second["tuned"] == first["tuned"]
    assert second["bias"]["axes"] == first["bias"]["axes"]
    fresh = evaluate(rows, "--fresh-base")  # computed again, and kept in place of the first
    assert fresh["base_reused"] == [] and fresh["base"] == first["base"]
    assert evaluate(rows)["base_reused"] == ["task", "bias"]
    # a damaged file is computed again, not trusted
    damaged = list((Path(os.environ["TUNELAB_HOME"]) / "eval-base").glob("task-*.json"))
    assert damaged
    for f in damaged:
        f.write_text("{oops")
    assert evaluate(rows)["base_reused"] == ["bias"]
    assert evaluate(rows)["base_reused"] == ["task", "bias"]
    # other rows: their own base answers; the bias probes do not depend on the rows
    other = write_jsonl(tmp_path / "other.jsonl", MEMO_ROWS[3:6])
    assert evaluate(other)["base_reused"] == ["bias"]


def test_chat_one_prompt(capsys, cli_run, tiny_model):
    code, out, _ = run_cli(capsys, "chat", cli_run / "run", "--prompt", "Code word 1?", "--max-new-tokens", "5")
    assert code == 0 and out.strip()
    code, out, _ = run_cli(capsys, "chat", "--model", tiny_model, "--prompt", "hi", "--max-new-tokens", "3")
    assert code == 0


# ---------------------------------------------------------------- bad input: one line, exit 2

def _assert_one_line_error(code, err, *needles):
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_missing_file(capsys, tmp_path):
    code, _, err = run_cli(capsys, "data", "check", tmp_path / "nope.jsonl")
    _assert_one_line_error(code, err, "nope.jsonl", "no such file")


def test_empty_file(capsys, tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    code, _, err = run_cli(capsys, "train", "--data", tmp_path / "empty.jsonl")
    _assert_one_line_error(code, err, "empty.jsonl", "empty")


def test_not_jsonl(capsys, tmp_path, tiny_model):
    (tmp_path / "notes.txt").write_text("hello\nworld\n")
    code, _, err = run_cli(capsys, "train", "--model", tiny_model, "--data", tmp_path / "notes.txt")
    _assert_one_line_error(code, err, "notes.txt:1", "invalid_json")


def test_unknown_model(capsys, memo_file):
    code, _, err = run_cli(capsys, "train", "--model", "no-such-model", "--data", memo_file)
    _assert_one_line_error(code, err, "unknown model 'no-such-model'", "smollm2-135m-instruct")


def test_unknown_method(capsys, memo_file):
    code, _, err = run_cli(capsys, "train", "--method", "magic", "--data", memo_file)
    _assert_one_line_error(code, err, "unknown method 'magic'", "lora")


def test_unknown_config_key(capsys, tmp_path, memo_file):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  lr: 0.001\n  epoch: 3\n")
    code, _, err = run_cli(capsys, "train", cfg, "--data", memo_file)
    _assert_one_line_error(code, err, "unknown config key 'train.epoch'", "c.yaml")


def test_set_of_wrong_type(capsys, memo_file):
    code, _, err = run_cli(capsys, "train", "--data", memo_file, "--set", "train.batch_size=lots")
    _assert_one_line_error(code, err, "train.batch_size")


def test_not_a_run_directory(capsys, tmp_path, memo_file):
    code, _, err = run_cli(capsys, "eval", tmp_path, "--data", memo_file)
    _assert_one_line_error(code, err, "not a run directory")


def test_resume_with_no_checkpoint(capsys, cli_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(cli_run / "run", copy)
    shutil.rmtree(copy / "checkpoints")
    before = (copy / "adapter" / "adapter_model.safetensors").read_bytes()
    code, _, err = run_cli(capsys, "train", "--resume", copy)
    _assert_one_line_error(code, err, "no checkpoint")
    assert (copy / "adapter" / "adapter_model.safetensors").read_bytes() == before


def test_hub_id_offline_says_so(capsys, memo_file, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no waiting on network timeouts
    code, _, err = run_cli(capsys, "train", "--model", "some-org/some-model", "--data", memo_file)
    _assert_one_line_error(code, err, "some-org/some-model", "Hugging Face Hub")
