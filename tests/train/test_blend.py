"""train.blend: general rows mixed into training (never into validation), as many as the share
asks, in an order fixed by the seed; general:SHARE uses the base model's own answers."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import MEMO_ROWS, write_jsonl
from tunelab import api
from tunelab.config import build_config
from tunelab.errors import ConfigError
from tunelab.train import blend


def _task(n: int) -> list[list[dict]]:
    return [[{"role": "user", "content": f"task {i}"}, {"role": "assistant", "content": str(i)}] for i in range(n)]


@pytest.fixture
def general_file(tmp_path):
    return write_jsonl(tmp_path / "general.jsonl", [{"prompt": f"general {i}", "completion": f"g{i}"} for i in range(50)])


def test_a_file_blend_adds_the_share_asked(general_file):
    mixed, info = blend.mix(f"{general_file}:0.2", _task(40), seed=1)
    assert info == {"source": str(general_file), "share": 0.2, "wanted": 10, "rows": 10}
    assert len(mixed) == 50 and sum(m[0]["content"].startswith("general") for m in mixed) == 10
    assert sorted(m[0]["content"] for m in mixed if m[0]["content"].startswith("task")) == \
        sorted(f"task {i}" for i in range(40))  # every task row kept


def test_the_seed_fixes_which_rows_and_their_order(general_file):
    one, _ = blend.mix(f"{general_file}:0.2", _task(40), seed=1)
    again, _ = blend.mix(f"{general_file}:0.2", _task(40), seed=1)
    other, _ = blend.mix(f"{general_file}:0.2", _task(40), seed=2)
    assert one == again and one != other


def test_a_small_file_gives_what_it_has(general_file):
    _, info = blend.mix(f"{general_file}:0.9", _task(40), seed=1)
    assert info["wanted"] == 360 and info["rows"] == 50


def test_general_rows_are_the_base_models_answers_and_cached(tiny_model, monkeypatch):
    from tunelab.models.load import load_model, load_tokenizer, resolve

    ref = resolve(tiny_model)
    model, tok = load_model(ref, "float32"), load_tokenizer(ref)
    rows = blend.general_rows(model, tok, ref.source, 5, seed=3)
    assert 1 <= len(rows) <= 5 and [r[0]["content"] for r in rows] == blend.requests()[:len(rows)]
    monkeypatch.setattr(blend, "_answer", lambda *a: pytest.fail("generated again instead of reading the cache"))
    assert blend.general_rows(model, tok, ref.source, 5, seed=3) == rows


def test_bad_blend_specs_are_config_errors():
    for spec in ("general", "general:1.5", ":0.1", "general:x"):
        with pytest.raises(ConfigError, match="train.blend"):
            build_config(sets=[f"train.blend={spec}"])


def test_a_blended_run_saves_its_rows_and_resolves_auto(tiny_model, tmp_path, general_file):
    train = write_jsonl(tmp_path / "train.jsonl", MEMO_ROWS * 5)  # 40 rows
    val = write_jsonl(tmp_path / "val.jsonl", MEMO_ROWS)
    cfg = build_config(overrides={"model.name": tiny_model, "data.train": str(train), "data.val": str(val)},
                       sets=[f"train.blend={general_file}:0.2", "train.max_steps=2", "train.bf16=off"])
    notes = []
    run = api.train(cfg, out=tmp_path / "run", events=lambda e: notes.append(e.get("text", "")))
    saved = [json.loads(x) for x in (run.data / "train.jsonl").read_text().splitlines()]
    assert len(saved) == 50 and len((run.data / "val.jsonl").read_text().splitlines()) == 8
    assert run.summary()["blend"]["rows"] == 10
    written = yaml.safe_load(run.config_file.read_text())
    assert isinstance(written["train"]["lr"], float) and isinstance(written["train"]["batch_size"], int)
    assert isinstance(written["method"]["lora"]["r"], int) and written["train"]["epochs"] != "auto"
    assert any(n.startswith("auto: 50 rows") for n in notes) and run.summary()["auto"].startswith("auto: 50 rows")
