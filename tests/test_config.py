"""Config merging: YAML < flags < --set, with typed values and clear errors."""

from __future__ import annotations

import pytest

from tunelab.config import build_config
from tunelab.errors import ConfigError


def test_precedence_and_types(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  lr: 0.001\n  epochs: 2\nmethod:\n  lora:\n    r: 4\n")
    cfg = build_config(f, overrides={"train.epochs": 5}, sets=["train.lr=1e-4", "method.lora.alpha=32",
                                                              "method.lora.target_modules=[q_proj, v_proj]"])
    assert cfg.train.lr == 1e-4 and cfg.train.epochs == 5
    assert cfg.method.lora.r == 4 and cfg.method.lora.alpha == 32
    assert cfg.method.lora.target_modules == ["q_proj", "v_proj"]
    assert cfg.train.batch_size == "auto"  # default kept


def test_yaml_on_off_words_work_for_switches(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  bf16: off\n")
    assert build_config(f).train.bf16 == "off"
    assert build_config(sets=["train.bf16=on"]).train.bf16 == "on"


@pytest.mark.parametrize("item, needle", [
    ("train.lr=fast", "train.lr"),
    ("train.epochs=-1", "train.epochs"),
    ("train.nope=1", "unknown config key 'train.nope'"),
    ("bogus.key=1", "unknown config key 'bogus'"),
    ("train", "expected key=value"),
])
def test_bad_overrides_are_config_errors(item, needle):
    with pytest.raises(ConfigError) as exc:
        build_config(sets=[item])
    assert needle in str(exc.value)


def test_bad_yaml_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        build_config(f)
    with pytest.raises(ConfigError, match="not found"):
        build_config(tmp_path / "missing.yaml")


def test_resolved_config_round_trips(tmp_path):
    cfg = build_config(sets=["train.lr=3e-4"])
    f = tmp_path / "r.yaml"
    f.write_text(cfg.to_yaml())
    assert build_config(f) == cfg


def test_a_run_saved_with_the_old_rl_section_still_loads(tmp_path):
    import yaml

    from tunelab.rundir import RunDir

    old = {"train": {"stage": "ppo"}, "rl": {"reward_model": "runs/rm", "beta": 0.3, "mini_batch": 4,
                                            "num_generations": 3}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    cfg = RunDir(tmp_path).config()
    assert cfg.ppo.reward_model == "runs/rm" and cfg.rloo.reward_model == "runs/rm"
    assert cfg.dpo.beta == 0.3 and cfg.ppo.mini_batch == 4 and cfg.rloo.num_generations == 3
