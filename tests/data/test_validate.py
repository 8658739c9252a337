"""Format detection and validation: every error kind is reported with its line number."""

from __future__ import annotations

import json

import pytest

from tests.conftest import write_jsonl
from tunelab.data.formats import to_messages
from tunelab.data.validate import parse_file

GOOD_CHAT = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def findings(path):
    report = parse_file(path).report
    return [(f.line, f.kind) for f in report.errors]


@pytest.mark.parametrize(
    "bad, kind",
    [
        ("[1, 2]", "not_object"),
        ({"messages": "hi"}, "missing_messages_list"),
        ({"messages": [{"role": "user"}, {"role": "assistant", "content": "x"}]}, "message_missing_key"),
        ({"messages": [{"role": "user", "content": "q", "mood": "x"}, {"role": "assistant", "content": "a"}]},
         "message_unrecognized_key"),
        ({"messages": [{"role": "robot", "content": "q"}, {"role": "assistant", "content": "a"}]}, "unrecognized_role"),
        ({"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "a"}]}, "missing_content"),
        ({"messages": [{"role": "user", "content": "only a question"}]}, "no_assistant_message"),
        ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "  "}]}, "empty_output"),
        ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 2}]},
         "invalid_weight"),
        ({"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "a"}]}, "wrong_type"),
        ("{not json", "invalid_json"),
        ("", "blank_line"),
        ({"foo": 1}, "unknown_format"),
        ({"instruction": "q", "output": "a"}, "mixed_format"),
    ],
)
def test_each_chat_error_kind_names_its_line(tmp_path, bad, kind):
    rows = [GOOD_CHAT, GOOD_CHAT, bad if isinstance(bad, str) else json.dumps(bad), GOOD_CHAT]
    path = write_jsonl(tmp_path / "f.jsonl", rows)
    assert (3, kind) in findings(path)
    assert all(line == 3 for line, _ in findings(path))


def test_invalid_utf8_is_reported_with_its_line(tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_bytes(json.dumps(GOOD_CHAT).encode() + b"\n" + b'{"messages": "\xff\xfe"}\n')
    assert findings(path) == [(2, "invalid_utf8")]


def test_instruction_errors(tmp_path):
    rows = [
        {"instruction": "q", "output": "a"},
        {"instruction": "q", "output": ""},
        {"instruction": "q"},
        {"instruction": 3, "output": "a"},
    ]
    path = write_jsonl(tmp_path / "f.jsonl", rows)
    assert findings(path) == [(2, "empty_output"), (3, "missing_field"), (4, "wrong_type")]


def test_formats_are_detected_and_converted(tmp_path):
    for rows, fmt in [
        ([GOOD_CHAT], "chat"),
        ([{"instruction": "Add", "input": "1+1", "output": "2"}], "instruction"),
        ([{"prompt": "Say hi", "completion": "hi"}], "completion"),
    ]:
        parsed = parse_file(write_jsonl(tmp_path / f"{fmt}.jsonl", rows))
        assert parsed.format == fmt and parsed.report.ok
        assert parsed.messages[0][-1]["role"] == "assistant"
    assert to_messages({"instruction": "Add", "input": "1+1", "output": "2"}, "instruction") == [
        {"role": "user", "content": "Add\n\n1+1"}, {"role": "assistant", "content": "2"}]


def test_trailing_blank_lines_and_bom_are_fine(tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD_CHAT).encode() + b"\n\n\n")
    assert findings(path) == []


def test_extra_keys_warn_but_do_not_fail(tmp_path):
    path = write_jsonl(tmp_path / "f.jsonl", [{"instruction": "q", "output": "a", "id": 7}])
    report = parse_file(path).report
    assert report.ok and [(w.line, w.kind) for w in report.warnings] == [(1, "unrecognized_key")]
