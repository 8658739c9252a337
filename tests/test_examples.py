"""Every config in examples/ runs in a smoke mode: the tiny model, two steps, short answers, the
first rows of the example's data file.

QLoRA included: the installed bitsandbytes quantises to 4-bit on the CPU too, so the QLoRA
example trains here as the others do.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.helpers import run_cli

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SMOKE = ["train.max_steps=2", "train.batch_size=2", "train.epochs=1", "train.eval_steps=2", "data.max_length=96",
         "eval.max_new_tokens=8", "train.report_to=none"]
SINGLE = ["sft-lora", "qlora", "full", "dpo", "base-model-chatml"]
ROWS = 24


def first_rows(path: str, folder: Path, rows: int = ROWS) -> Path:
    """The example's data file cut to its first rows (same format, same fields)."""
    lines = (ROOT / path).read_text(encoding="utf-8").splitlines()[:rows]
    short = folder / Path(path).name
    short.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return short


def test_every_example_is_covered_here():
    assert sorted(p.stem for p in EXAMPLES.glob("*.yaml")) == sorted(SINGLE + ["rlhf"])


@pytest.mark.parametrize("name", SINGLE)
def test_example_trains_in_smoke_mode(capsys, tiny_model, tmp_path, monkeypatch, name):
    monkeypatch.chdir(ROOT)  # the examples name data files relative to the repository
    out = tmp_path / name
    example = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    assert (ROOT / example["data"]["train"]).is_file()
    sets = [f"model.name={tiny_model}", f"data.train={first_rows(example['data']['train'], tmp_path)}", *SMOKE]
    code, _, err = run_cli(capsys, "train", EXAMPLES / f"{name}.yaml", "--out", out, *[a for s in sets for a in ("--set", s)])
    assert code == 0, err
    assert (out / "run.json").is_file() and (out / "adapter" if name != "full" else out / "model").is_dir()
    written = yaml.safe_load((out / "config.yaml").read_text())
    assert written["method"]["name"] == example["method"]["name"]
    assert written["train"]["stage"] == example["train"].get("stage", "sft")
    assert written["data"].get("chat_template") == example["data"].get("chat_template")


def test_rlhf_example_runs_its_three_stages(tiny_model, tmp_path, monkeypatch):
    from tunelab import api

    monkeypatch.chdir(ROOT)
    config = yaml.safe_load((EXAMPLES / "rlhf.yaml").read_text())
    config["model"] = {"name": tiny_model}
    config["train"] = {**config.get("train", {}), "batch_size": 4, "report_to": []}
    config["ppo"].update(rollout_batch=4, mini_batch=2, max_new_tokens=6, eval_prompts=4)
    for stage in config["stages"].values():
        stage["train"] = {**stage.get("train", {}), "max_steps": 2}
        assert (ROOT / stage["data"]).is_file()
        stage["data"] = {"train": str(first_rows(stage["data"], tmp_path)), "max_length": 1000}
    runs = api.rlhf(config, out=tmp_path / "rlhf")
    assert list(runs) == ["sft", "reward", "ppo"]
    assert all((path / "run.json").is_file() for path in runs.values())
