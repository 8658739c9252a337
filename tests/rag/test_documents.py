"""Reading documents: files, folders, JSONL rows; what cannot be read is named, not fatal."""

from __future__ import annotations

import json

from tunelab.rag.documents import read_documents


def test_folders_files_and_jsonl_rows_are_read_and_bad_ones_named(tmp_path):
    folder = tmp_path / "kb"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.md").write_text("# A\nalpha facts", encoding="utf-8")
    (folder / "sub" / "b.txt").write_text("bravo facts", encoding="utf-8")
    (folder / "notes.pdf").write_bytes(b"%PDF")  # not a supported type: passed over inside a folder
    (folder / ".hidden.md").write_text("secret", encoding="utf-8")
    (folder / "bad.txt").write_bytes(b"\xff\xfe\x00 broken")
    rows = tmp_path / "rows.jsonl"
    rows.write_text("\n".join([json.dumps({"text": "charlie facts", "id": "doc-c"}),
                               "{not json", json.dumps({"body": "no text field"}),
                               json.dumps({"text": "delta facts"})]) + "\n", encoding="utf-8")
    (tmp_path / "x.docx").write_bytes(b"PK")
    docs, skipped = read_documents([folder, rows, tmp_path / "missing.md", tmp_path / "x.docx"])
    assert [d.name for d in docs] == [str(folder / "a.md"), str(folder / "sub" / "b.txt"), "doc-c", f"{rows}:4"]
    assert docs[2].text == "charlie facts"
    reasons = {s.name: s.reason for s in skipped}
    assert "not UTF-8" in reasons[str(folder / "bad.txt")]
    assert "not valid JSON" in reasons[f"{rows}:2"]
    assert '"text"' in reasons[f"{rows}:3"]
    assert reasons[str(tmp_path / "missing.md")] == "no such file or folder"
    assert "unsupported file type .docx" in reasons[str(tmp_path / "x.docx")]


def test_a_custom_text_field_and_an_empty_folder(tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"body": "echo facts"}) + "\n", encoding="utf-8")
    (tmp_path / "empty").mkdir()
    docs, skipped = read_documents([rows, tmp_path / "empty"], text_field="body")
    assert [d.text for d in docs] == ["echo facts"]
    assert [s.name for s in skipped] == [str(tmp_path / "empty")]
