"""Every data source: each kind reads its rows, and a bad row is reported at its position in
the source's own terms (JSONL line, CSV row with the header as row 1, 0-based index)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import run_cli
from tunelab.data import dataset
from tunelab.data.validate import parse_file
from tunelab.errors import ConfigError, DataError

GOOD = [{"instruction": "Code word 1?", "output": "alpha"}, {"instruction": "Code word 2?", "output": "bravo"}]
BAD = {"instruction": "Code word 3?", "output": ""}  # nothing to learn from this row


def _rows_with_bad() -> list[dict]:
    return [GOOD[0], BAD, GOOD[1]]


def write_json(path: Path, rows) -> Path:
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def write_folder(path: Path, rows: list[dict]) -> Path:
    import datasets

    datasets.Dataset.from_list(rows).save_to_disk(str(path))
    return path


def test_jsonl_bad_row_is_named_by_its_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _rows_with_bad()))
    with pytest.raises(DataError, match=r"d\.jsonl:2: empty_output: field 'output' is empty"):
        dataset.load_conversations(path)


def test_json_array_reads_rows_and_names_a_bad_one_by_index(tmp_path):
    path = write_json(tmp_path / "d.json", _rows_with_bad())
    parsed = parse_file(path)
    assert parsed.report.unit == "index" and parsed.lines == [0, 2]
    assert [(f.line, f.kind) for f in parsed.report.errors] == [(1, "empty_output")]
    with pytest.raises(DataError, match=r"d\.json index 1: empty_output"):
        dataset.load_conversations(path)


def test_json_file_of_json_lines_reads_as_jsonl(tmp_path):
    path = tmp_path / "lines.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in GOOD))
    assert len(dataset.load_conversations(path)) == 2


def test_broken_json_array_is_one_line_with_its_place(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[{"instruction": "a", "output": "b"},\n {"instruction": ]')
    with pytest.raises(DataError, match=r"d\.json: invalid JSON at line 2 column 18"):
        dataset.load_conversations(path)


def test_csv_rows_count_the_header_as_row_one(tmp_path):
    path = tmp_path / "d.csv"
    # a quoted answer spanning two lines is still one row; an empty spreadsheet row is skipped
    path.write_text('instruction,output\nCode word 1?,"alpha\nand more"\n,,\nCode word 3?,\nCode word 4?,42\n')
    parsed = parse_file(path)
    assert parsed.report.unit == "row"
    assert parsed.lines == [2, 5]  # numbers stay text: "42" is an answer like any other
    assert parsed.messages[1][-1]["content"] == "42"
    assert [(f.line, f.message) for f in parsed.report.errors] == [(4, "missing field 'output'")]
    with pytest.raises(DataError, match=r"d\.csv row 4: missing_field: missing field 'output'"):
        dataset.load_conversations(path)


def test_csv_messages_column_holds_json(tmp_path):
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    path = tmp_path / "chat.csv"
    path.write_text("messages\n" + '"' + json.dumps(chat).replace('"', '""') + '"\n"[{""role"": ""user""}"\n')
    parsed = parse_file(path)
    assert parsed.messages == [chat]
    assert [(f.line, f.kind) for f in parsed.report.errors] == [(3, "invalid_json")]
    assert "field 'messages' holds invalid JSON" in parsed.report.errors[0].message


def test_parquet_null_and_non_string_cells_are_named_by_index(tmp_path):
    path = write_parquet(tmp_path / "d.parquet", [
        {"instruction": "Code word 1?", "output": "alpha", "answer_id": 1},
        {"instruction": "Code word 2?", "output": None, "answer_id": 2},  # a null cell is a missing field
    ])
    parsed = parse_file(path)
    assert parsed.report.unit == "index" and parsed.lines == [0]
    assert [(f.line, f.kind) for f in parsed.report.errors] == [(1, "missing_field")]
    numbers = write_parquet(tmp_path / "n.parquet", [{"prompt": "2+2?", "completion": 4}])
    with pytest.raises(DataError, match=r"n\.parquet index 0: wrong_type: field 'completion' must be a string, got number"):
        dataset.load_conversations(numbers)


def test_datasets_folder_rows_and_a_bad_one(tmp_path):
    folder = write_folder(tmp_path / "saved", [
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]},
        {"messages": [{"role": "user", "content": "Hi again"}]},
    ])
    parsed = parse_file(folder)
    assert len(parsed.messages) == 1
    with pytest.raises(DataError, match=r"saved index 1: no_assistant_message"):
        dataset.load_conversations(folder)


def test_folder_not_written_by_datasets_is_refused(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(DataError, match="not one written by datasets' save_to_disk"):
        parse_file(tmp_path / "plain")


def test_columns_map_other_names_onto_tunelab_fields(tmp_path):
    path = tmp_path / "qa.csv"
    path.write_text("question,answer,id\nCode word 1?,alpha,7\nCode word 2?,,8\n")
    parsed = parse_file(path, {"question": "instruction", "answer": "output"})
    assert parsed.format == "instruction" and parsed.messages[0][-1]["content"] == "alpha"
    assert [(f.line, f.message) for f in parsed.report.errors] == [(3, "missing field 'output'")]
    assert parsed.report.warnings[0].message == "ignored key(s): id"
    with pytest.raises(DataError, match=r"qa\.csv: data\.columns names column 'query', which is not in the source"):
        parse_file(path, {"query": "instruction"})
    with pytest.raises(ConfigError, match="'answer' maps onto 'reply', which is no tunelab field"):
        parse_file(path, {"answer": "reply"})


def test_mapping_onto_a_column_the_source_has_is_refused(tmp_path):
    path = write_json(tmp_path / "d.json", [{"question": "q", "instruction": "i", "output": "o"}])
    with pytest.raises(DataError, match=r"d\.json index 0: data\.columns maps 'question' onto 'instruction'"):
        parse_file(path, {"question": "instruction"})


def test_data_check_cli_reads_csv_with_columns(tmp_path, capsys, tiny_model):
    path = tmp_path / "qa.csv"
    path.write_text("question,answer\nCode word 1?,alpha\nCode word 2?,\n")
    code, out, _ = run_cli(capsys, "data", "check", path, "--model", tiny_model, "--columns",
                           "question=instruction,answer=output", "--json")
    report = json.loads(out)
    assert code == 1 and report["unit"] == "row" and report["rows"] == 2
    assert report["errors"] == [{"line": 3, "kind": "missing_field", "message": "missing field 'output'"}]
    code, _, err = run_cli(capsys, "data", "check", path, "--model", tiny_model, "--columns", "question")
    assert code == 2 and "expected SOURCE=FIELD pairs" in err


def test_data_prepare_from_parquet_names_dropped_rows_by_index(tmp_path, capsys):
    rows = [{"instruction": f"Code word {i}?", "output": f"w{i}"} for i in range(10)] + [BAD]
    path = write_parquet(tmp_path / "d.parquet", rows)
    code, out, _ = run_cli(capsys, "data", "prepare", path, "--out", tmp_path / "o", "--val", "0.2",
                           "--test", "0.2", "--model", "", "--json")
    card = json.loads(out)
    assert code == 0 and card["source"]["unit"] == "index" and card["rows_in"] == 11
    assert card["dropped"] == [{"line": 10, "step": "validate", "reason": "empty_output: field 'output' is empty: "
                                                                          "nothing to learn from this row"}]
    assert sum(s["rows"] for s in card["splits"].values()) == 10
    assert "| index | step | reason |" in (tmp_path / "o" / "data_card.md").read_text()


def test_hub_dataset_offline_fails_with_one_line(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run([sys.executable, "-m", "tunelab", "data", "check", "hf:tunelab-examples/no-such-set:test"],
                          capture_output=True, text=True, env=env, timeout=120)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert lines[-1].startswith("error: hf:tunelab-examples/no-such-set:test: cannot load the dataset "
                                "'tunelab-examples/no-such-set' (split 'test') from the Hugging Face Hub")


def test_hub_spec_needs_org_and_name():
    with pytest.raises(ConfigError, match="expected hf:ORG/NAME"):
        parse_file("hf:a/b/c")


def test_training_reads_a_parquet_file_through_the_column_mapping(tmp_path, tiny_model):
    from tunelab import api
    from tunelab.config import build_config
    from tunelab.data.sources import digest

    rows = [{"question": f"Code word {i}?", "answer": w} for i, w in enumerate(["alpha", "bravo", "charlie", "delta"])]
    path = write_parquet(tmp_path / "codes.parquet", rows)
    cfg = build_config(overrides={"model.name": tiny_model, "data.train": str(path), "train.max_steps": 1,
                                  "train.batch_size": 2}, sets=["data.columns.question=instruction",
                                                                 "data.columns.answer=output"])
    run = api.train(cfg, out=tmp_path / "run")
    saved = [json.loads(line) for line in (run.path / "data" / "train.jsonl").read_text().splitlines()]
    saved += [json.loads(line) for line in (run.path / "data" / "val.jsonl").read_text().splitlines()]
    assert sorted(r["messages"][-1]["content"] for r in saved) == ["alpha", "bravo", "charlie", "delta"]
    card = json.loads((run.path / "data" / "data_card.json").read_text())
    assert card["sources"]["train"] == {"path": str(path), "sha256": digest(path)}
