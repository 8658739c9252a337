"""Prompt-only files (what PPO, RLOO and GRPO answer): detected by `data check`, every bad row
named by its line, and loaded as prompts that keep their other fields."""

from __future__ import annotations

import json

import pytest

from tests.conftest import write_jsonl
from tests.helpers import run_cli
from tunelab.data import dataset
from tunelab.data.validate import parse_file
from tunelab.errors import DataError

PROMPT = {"prompt": "What is 2+2?", "answer": "4"}
CHAT_PROMPT = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                            {"role": "user", "content": "What is 2+2?"}], "answer": "4"}


def errors(path) -> list[tuple[int, str]]:
    return [(f.line, f.kind) for f in parse_file(path).report.errors]


def test_data_check_names_the_prompt_formats(capsys, tmp_path, tiny_model):
    for rows, fmt in [([PROMPT, {"prompt": "Capital of France?", "system": "Be brief."}], "prompt"),
                      ([CHAT_PROMPT, {"messages": [{"role": "user", "content": "q"}]}], "chat_prompt")]:
        path = write_jsonl(tmp_path / f"{fmt}.jsonl", rows)
        code, out, _ = run_cli(capsys, "data", "check", path, "--model", tiny_model, "--json")
        report = json.loads(out)
        assert code == 0 and report["format"] == fmt and report["rows"] == 2
        assert report["errors"] == [] and report["warnings"] == []  # the extra "answer" field is kept, not ignored
        assert report["tokens"]["total"] > 0


@pytest.mark.parametrize("bad, kind", [
    ({"prompt": ""}, "missing_content"),
    ({"prompt": 5}, "wrong_type"),
    ({"prompt": "q", "system": ["x"]}, "wrong_type"),
    ({"prompt": []}, "missing_messages_list"),
    ({"prompt": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}, "prompt_not_user_turn"),
    ({"prompt": [{"role": "robot", "content": "q"}]}, "unrecognized_role"),
    ({"prompt": [{"role": "user"}]}, "message_missing_key"),
    ({"prompt": "q", "completion": "a"}, "mixed_format"),
    ({"messages": [{"role": "user", "content": "q"}]}, "mixed_format"),
])
def test_each_bad_prompt_row_names_its_line(tmp_path, bad, kind):
    path = write_jsonl(tmp_path / "p.jsonl", [PROMPT, PROMPT, bad, PROMPT])
    assert errors(path) == [(3, kind)]


@pytest.mark.parametrize("bad, kind", [
    ({"messages": [{"role": "user", "content": " "}]}, "missing_content"),
    ({"messages": [{"role": "user", "content": "q", "mood": "x"}]}, "message_unrecognized_key"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}, "mixed_format"),
])
def test_each_bad_chat_prompt_row_names_its_line(tmp_path, bad, kind):
    path = write_jsonl(tmp_path / "c.jsonl", [CHAT_PROMPT, CHAT_PROMPT, bad])
    assert errors(path) == [(3, kind)]


def test_training_files_missing_their_answer_stay_errors_of_that_format(tmp_path):
    completion = write_jsonl(tmp_path / "completion.jsonl", [{"prompt": "q", "completion": "a"}, {"prompt": "q2"}])
    assert errors(completion) == [(2, "missing_field")]
    chat = write_jsonl(tmp_path / "chat.jsonl", [{"messages": [{"role": "user", "content": "q"},
                                                               {"role": "assistant", "content": "a"}]},
                                                 {"messages": [{"role": "user", "content": "q2"}]}])
    assert errors(chat) == [(2, "no_assistant_message")]


def test_prompt_rows_keep_their_fields_and_every_format_gives_prompts(tmp_path):
    rows = dataset.load_prompt_rows(write_jsonl(tmp_path / "p.jsonl", [
        PROMPT, {"prompt": [{"role": "user", "content": "Name a day."}], "system": "Be brief.", "meta": {"id": 7}}]))
    assert rows == [{"prompt": [{"role": "user", "content": "What is 2+2?"}], "answer": "4"},
                    {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a day."}],
                     "meta": {"id": 7}}]
    chat = dataset.load_prompt_rows(write_jsonl(tmp_path / "c.jsonl", [CHAT_PROMPT]))
    assert chat == [{"prompt": CHAT_PROMPT["messages"], "answer": "4"}]
    pairs = dataset.load_prompt_rows(write_jsonl(tmp_path / "pairs.jsonl",
                                                 [{"prompt": "q", "chosen": "good", "rejected": "bad"}]))
    assert pairs == [{"prompt": [{"role": "user", "content": "q"}], "chosen": "good", "rejected": "bad"}]
    completion = dataset.load_prompts(write_jsonl(tmp_path / "sft.jsonl", [{"prompt": "q", "completion": "a"}]))
    assert completion == [[{"role": "user", "content": "q"}]]


def test_a_required_field_missing_from_a_row_names_the_line(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [PROMPT, {"prompt": "no answer here"}])
    with pytest.raises(DataError, match=r"p.jsonl:2: missing_field: no 'answer' field"):
        dataset.load_prompt_rows(path, required=("answer",))


def test_supervised_training_refuses_prompts_without_answers(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [PROMPT])
    with pytest.raises(DataError, match="prompts without answers.*--stage grpo, rloo or ppo"):
        dataset.load_conversations(path)


def test_data_prepare_splits_a_prompt_file_keeping_each_prompts_fields(tmp_path):
    from tunelab.data.prepare import Options, prepare

    rows = [{"prompt": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(20)]
    result = prepare(write_jsonl(tmp_path / "sums.jsonl", rows), tmp_path / "out", Options(val=0.2, test=0.0))
    assert result["format"] == "chat" and [result["splits"][k]["rows"] for k in ("train", "val", "test")] == [16, 4, 0]
    written = [json.loads(line) for line in (tmp_path / "out" / "train.jsonl").read_text().splitlines()]
    assert all(r["messages"][-1]["role"] == "user" and r["answer"] == str(2 * int(r["messages"][-1]["content"].split()[2]))
               for r in written)
    assert parse_file(tmp_path / "out" / "train.jsonl").format == "chat_prompt"
