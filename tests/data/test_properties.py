"""Random and corrupted JSONL never crashes the doctor, and its line numbers are right."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunelab.data.validate import parse_file

GOOD = json.dumps({"instruction": "q", "output": "a"}).encode()

junk_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
line = st.one_of(
    st.just(GOOD),
    junk_json.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=60).filter(lambda b: b"\n" not in b and b"\r" not in b),
    st.just(b"\xef\xbb\xbf" + GOOD),
    st.just(b"x" * 100_000),
    st.dictionaries(st.sampled_from(["messages", "instruction", "output", "prompt", "chosen", "rejected"]),
                    junk_json, max_size=3).map(lambda d: json.dumps(d).encode()),
)


def blank(i: int, raw: bytes) -> bool:
    if i == 0:
        raw = raw.removeprefix(b"\xef\xbb\xbf")
    try:
        return not raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return False


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(line, min_size=1, max_size=12))
def test_doctor_never_raises_and_lines_are_right(tmp_path, lines):
    path = tmp_path / "f.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    parsed = parse_file(path)  # must not raise
    report = parsed.report
    n = len(lines)
    last_content = max((i + 1 for i, ln in enumerate(lines) if not blank(i, ln)), default=0)
    for f in report.errors:
        assert 1 <= f.line <= n
        if f.kind == "blank_line":
            assert blank(f.line - 1, lines[f.line - 1]) and f.line < last_content
    bad_lines = {f.line for f in report.errors}
    assert not bad_lines & set(parsed.lines)  # a line is either valid or reported, never both
    for ln in parsed.lines:
        assert not blank(ln - 1, lines[ln - 1])
    # a byte-order mark is only allowed at the start of the file
    good = {i + 1 for i, ln in enumerate(lines) if ln == GOOD or (i == 0 and ln == b"\xef\xbb\xbf" + GOOD)}
    first_format_ok = all(ln in parsed.lines for ln in good) or parsed.format != "instruction"
    assert first_format_ok
