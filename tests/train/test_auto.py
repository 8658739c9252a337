"""`auto` hyperparameters: the same data statistics always give the same choices, explicit values
are never touched, and what is chosen is said in one line and saved as numbers."""

from __future__ import annotations

import pytest
import yaml

from tunelab.config import build_config
from tunelab.errors import ConfigError
from tunelab.train import auto
from tunelab.train.auto import DataStats

SMALL = DataStats(rows=64, answer_tokens=900, mean_tokens=120.0)
MEDIUM = DataStats(rows=412, answer_tokens=38_000, mean_tokens=180.0)
LONG = DataStats(rows=3000, answer_tokens=400_000, mean_tokens=700.0)


@pytest.mark.parametrize("stats, expected", [
    (SMALL, {"epochs": 5.0, "batch_size": 8, "r": 8, "alpha": 16}),
    (MEDIUM, {"epochs": 2.0, "batch_size": 8, "r": 16, "alpha": 32}),
    (LONG, {"epochs": 1.0, "batch_size": 4, "r": 16, "alpha": 32}),
    (DataStats(rows=12, answer_tokens=100, mean_tokens=20.0), {"epochs": 5.0, "batch_size": 1, "r": 8, "alpha": 16}),
])
def test_choices_follow_the_data(stats, expected):
    cfg, line = auto.resolve(build_config(), stats, params=135e6)
    t, lora = cfg.train, cfg.method.lora
    assert {"epochs": t.epochs, "batch_size": t.batch_size, "r": lora.r, "alpha": lora.alpha} == expected
    assert t.lr == auto.BASE_LR["lora"]
    assert auto.resolve(build_config(), stats, params=135e6) == (cfg, line)  # deterministic


def test_the_reason_is_one_line_with_the_numbers():
    _, line = auto.resolve(build_config(), MEDIUM, params=135e6)
    assert "\n" not in line
    assert line.startswith("auto: 412 rows, 38k answer tokens")
    assert "2 epochs" in line and "lr 0.0004" in line and "r 16" in line and "batch 8" in line


def test_learning_rate_follows_method_and_shrinks_with_model_size():
    assert auto.learning_rate("full", 135e6) < auto.learning_rate("lora", 135e6) < auto.learning_rate("prompt", 135e6)
    assert auto.learning_rate("lora", 7e9) < auto.learning_rate("lora", 1e9) < auto.learning_rate("lora", 135e6)
    assert auto.learning_rate("lora", 50e6) == auto.learning_rate("lora", 135e6)  # never above the measured rate


def test_explicit_values_are_kept():
    cfg = build_config(sets=["train.epochs=2", "train.lr=1e-4", "train.batch_size=3", "method.lora.r=4",
                             "method.lora.alpha=7"])
    resolved, line = auto.resolve(cfg, MEDIUM, params=135e6)
    assert resolved == cfg and line == ""
    partly, line = auto.resolve(build_config(sets=["train.lr=1e-4", "method.lora.r=32"]), MEDIUM, params=135e6)
    assert partly.train.lr == 1e-4 and partly.method.lora.r == 32 and partly.method.lora.alpha == 64
    assert "lr" not in line and "r 32" not in line and "alpha 64" in line


def test_methods_without_rank_resolve_only_the_training_values():
    cfg, line = auto.resolve(build_config(overrides={"method.name": "ia3"}), MEDIUM, params=135e6)
    assert cfg.train.lr == auto.BASE_LR["ia3"] and ", r " not in line and "alpha" not in line


def test_settle_gives_the_fixed_values_where_no_data_is_known():
    cfg = auto.settle(build_config(overrides={"train.stage": "dpo"}))
    assert (cfg.train.epochs, cfg.train.lr, cfg.train.batch_size) == (3.0, 2e-4, 8)
    assert (cfg.method.lora.r, cfg.method.lora.alpha) == (8, 16)
    explicit = build_config(sets=["train.lr=1e-5", "train.epochs=1", "train.batch_size=2", "method.lora.r=4",
                                  "method.lora.alpha=4"])
    assert auto.settle(explicit) == explicit


def test_yaml_numbers_and_the_word_auto_both_load(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  epochs: 2\n  lr: 3.0e-4\n  batch_size: auto\nmethod:\n  lora:\n    r: 16\n    alpha: AUTO\n")
    cfg = build_config(f)
    assert (cfg.train.epochs, cfg.train.lr, cfg.train.batch_size) == (2.0, 3e-4, "auto")
    assert (cfg.method.lora.r, cfg.method.lora.alpha) == (16, "auto")
    resolved, _ = auto.resolve(cfg, SMALL, params=135e6)
    saved = yaml.safe_load(resolved.to_yaml())
    assert saved["train"]["batch_size"] == 8 and saved["method"]["lora"]["alpha"] == 32
    with pytest.raises(ConfigError, match="method.lora.r"):
        build_config(sets=["method.lora.r=often"])
