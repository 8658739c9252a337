"""The stored base side of an evaluation: found only under the same name, named by everything
the result depends on, and never trusted when damaged."""

from __future__ import annotations

import json
import os
import types

from tunelab.evaluate import basecache


def test_identity_covers_every_file_of_the_model_folder(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "merges.txt").write_text("a b")
    model = types.SimpleNamespace()
    before = basecache.base_identity(str(tmp_path), model)
    assert before == basecache.base_identity(str(tmp_path), model)
    (tmp_path / "sub" / "merges.txt").write_text("a b c")
    assert basecache.base_identity(str(tmp_path), model) != before
    assert basecache.base_identity(str(tmp_path), types.SimpleNamespace(is_quantized=True)) is None
    hub = types.SimpleNamespace(config=types.SimpleNamespace(_commit_hash="abc"))
    assert basecache.base_identity("org/model", hub) == {"hub": "org/model", "commit": "abc"}
    assert basecache.base_identity("org/model", types.SimpleNamespace(config=None)) is None


def test_the_name_changes_with_the_part_the_settings_and_the_base():
    base = {"folder": "/m", "files": [["model.safetensors", 10, 1]]}
    name = basecache.key(base, "task", {"dtype": "bfloat16", "prompts": [[1, 2]]})
    assert name == basecache.key(base, "task", {"prompts": [[1, 2]], "dtype": "bfloat16"})
    assert name.startswith("task-")
    others = {basecache.key(base, "bias", {"dtype": "bfloat16", "prompts": [[1, 2]]}),
              basecache.key(base, "task", {"dtype": "float32", "prompts": [[1, 2]]}),
              basecache.key(base, "task", {"dtype": "bfloat16", "prompts": [[1, 3]]}),
              basecache.key({**base, "files": [["model.safetensors", 10, 2]]}, "task",
                            {"dtype": "bfloat16", "prompts": [[1, 2]]})}
    assert name not in others and len(others) == 4


def test_stored_values_come_back_and_damaged_ones_do_not():
    basecache.put("task-x", {"answers": ["a"], "loss": 1.5})
    assert basecache.get("task-x", ("answers", "loss")) == {"answers": ["a"], "loss": 1.5}
    assert basecache.get("task-y") is None
    path = basecache.folder() / "task-x.json"
    assert path.parent == basecache.folder() and str(path).startswith(os.environ["TUNELAB_HOME"])
    path.write_text(json.dumps({"value": {"answers": ["a"]}}))
    assert basecache.get("task-x", ("answers", "loss")) is None  # readable but incomplete
    path.write_text(json.dumps({"value": [1, 2]}))
    assert basecache.get("task-x") is None
    path.write_text("{oops")
    assert basecache.get("task-x") is None


def test_the_code_behind_a_stored_value_is_the_evaluation_code():
    """Every module the stored values depend on is hashed (a missing one would fail every eval),
    the evaluation's own modules among them."""
    from pathlib import Path

    root = Path(basecache.__file__).resolve().parent.parent
    assert all((root / name).is_file() for name in basecache._CODE)
    assert {"evaluate/run.py", "evaluate/sides.py", "inference/generate.py", "inference/load.py"} <= set(basecache._CODE)
    assert len(basecache._code_hash()) == 64
