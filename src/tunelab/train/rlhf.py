"""RLHF in three stages from one typed config: SFT -> reward model -> PPO (or RLOO).

    model: {name: ...}                  # shared sections apply to every stage
    train: {batch_size: 8}
    ppo: {rollout_batch: 16}
    stages:
      sft: {data: prefs.jsonl, train: {max_steps: 10}}
      reward: {data: prefs.jsonl}
      ppo: {data: prefs.jsonl}

Each stage's config is the shared sections with the stage's overrides merged in, validated as
a RunConfig (so every key is checked with its path); ``data: FILE`` is short for data.train.
The SFT stage may read the preference file: it then trains on each prompt with its chosen
answer. The policy stage starts from the SFT run and is scored by the reward run.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator

from tunelab import methods
from tunelab.config import RunConfig, validate
from tunelab.errors import ConfigError, RunError
from tunelab.events import EventSink, no_events
from tunelab.rundir import RunDir
from tunelab.typed import Section

Overrides = dict[str, Any]
PIPELINES = (["sft", "reward", "ppo"], ["sft", "reward", "rloo"], ["sft", "reward", "grpo"])


class StageOverrides(Section):
    """One stage's changes to the shared sections."""

    data: str | Overrides | None = Field(None, description="training file, or a data section")
    model: Overrides = Field(default_factory=dict, description="model section overrides")
    method: Overrides = Field(default_factory=dict, description="method section overrides")
    train: Overrides = Field(default_factory=dict, description="train section overrides")
    eval: Overrides = Field(default_factory=dict, description="eval section overrides")
    dpo: Overrides = Field(default_factory=dict, description="dpo section overrides")
    ppo: Overrides = Field(default_factory=dict, description="ppo section overrides")
    rloo: Overrides = Field(default_factory=dict, description="rloo section overrides")
    grpo: Overrides = Field(default_factory=dict, description="grpo section overrides")


class RlhfConfig(Section):
    """Shared sections (as in a RunConfig) and the three stages, in order."""

    model: Overrides = Field(default_factory=dict, description="shared model section")
    method: Overrides = Field(default_factory=dict, description="shared method section")
    data: Overrides = Field(default_factory=dict, description="shared data section")
    train: Overrides = Field(default_factory=dict, description="shared train section")
    eval: Overrides = Field(default_factory=dict, description="shared eval section")
    dpo: Overrides = Field(default_factory=dict, description="shared dpo section")
    ppo: Overrides = Field(default_factory=dict, description="shared ppo section")
    rloo: Overrides = Field(default_factory=dict, description="shared rloo section")
    grpo: Overrides = Field(default_factory=dict, description="shared grpo section")
    stages: dict[str, StageOverrides | str] = Field(
        ..., description="sft, reward and ppo (or rloo, or grpo), in that order; each at least {data: FILE}")

    @field_validator("stages")
    @classmethod
    def _three_stages(cls, value: dict) -> dict:
        if list(value) not in PIPELINES:
            raise ValueError("needs sft, reward and ppo (or rloo, or grpo), in that order, each at least {data: FILE}")
        return value

    @property
    def policy(self) -> str:
        return list(self.stages)[2]


def load(config: str | Path | dict) -> tuple[RlhfConfig, str]:
    """(the typed config, a name for it in error messages) from a YAML file or a dict."""
    if isinstance(config, dict):
        source, data = "rlhf config", copy.deepcopy(config)
    else:
        source = str(config)
        if not Path(config).is_file():
            raise ConfigError(f"{config}: config file not found")
        try:
            data = yaml.safe_load(Path(config).read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{config}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    try:
        return RlhfConfig.model_validate(data), source
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{source}: config key '{key}': {err['msg']}") from None


def stage_configs(config: RlhfConfig, source: str, out: Path) -> dict[str, RunConfig]:
    """Each stage's RunConfig: shared sections, then the stage's overrides, then the links
    between stages (the policy starts from out/sft and is scored by out/reward)."""
    shared = config.model_dump(exclude={"stages"}, exclude_defaults=True)
    cfgs = {}
    for name, stage in config.stages.items():
        stage = StageOverrides(data=stage) if isinstance(stage, str) else stage
        extra = stage.model_dump(exclude_defaults=True)
        if isinstance(extra.get("data"), str):
            extra["data"] = {"train": extra["data"]}
        merged = _merge(copy.deepcopy(shared), extra)
        merged = _merge(merged, {"train": {"stage": name}})
        if name == config.policy:
            merged = _merge(merged, {name: {"reward_model": str(out / "reward"), "init": str(out / "sft")}})
        cfgs[name] = validate(merged, f"{source} (stage {name})")
    return cfgs


def check(cfgs: dict[str, RunConfig], source: str) -> None:
    """Fail before the first stage trains, not after it."""
    from tunelab.train import stages

    policy = list(cfgs)[2]
    for name in ("reward", policy):
        stages.check(cfgs[name])
    if not cfgs["sft"].data.train:
        raise ConfigError(f"{source}: stages.sft needs data (a chat/instruction file, or the preference pairs)")
    if not methods.get(cfgs["sft"].method.name).lora_family:
        raise ConfigError(f"{source}: the SFT stage must train a LoRA-family adapter ({', '.join(methods.lora_family())}) "
                          f"for the {policy.upper()} policy to start from; got '{cfgs['sft'].method.name}'")


def run(config: str | Path | dict, out: Path, events: EventSink = no_events) -> dict[str, Path]:
    """Train the three stages into out/sft, out/reward and out/<policy>."""
    from tunelab.train import stages

    typed, source = load(config)
    cfgs = stage_configs(typed, source, out)
    check(cfgs, source)
    if out.exists() and any(out.iterdir()):
        raise RunError(f"{out}: already exists and is not empty; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    cfgs["sft"] = _sft_on_chosen_answers(cfgs["sft"], out)
    titles = {"sft": "supervised fine-tuning", "reward": "reward model",
              typed.policy: f"{typed.policy.upper()} against the reward model, starting from the SFT run"}
    runs = {}
    for number, (name, cfg) in enumerate(cfgs.items(), start=1):
        events({"event": "note", "text": f"stage {number}/3: {titles[name]}"})
        runs[name] = stages.run(cfg, RunDir(out / name), events).run_dir.path
    return runs


def _sft_on_chosen_answers(cfg: RunConfig, out: Path) -> RunConfig:
    """A preference file given to the SFT stage becomes its prompts with the chosen answers."""
    from tunelab.data import dataset
    from tunelab.data.load import write_jsonl

    if not dataset.parse_file(cfg.data.train, cfg.data.columns).is_preference:
        return cfg
    rows = [{"messages": p["prompt"] + [{"role": "assistant", "content": p["chosen"]}]}
            for p in dataset.load_pairs(cfg.data.train, cfg.data.columns)]
    write_jsonl(out / "sft_data.jsonl", rows)
    return cfg.model_copy(update={"data": cfg.data.model_copy(update={"train": str(out / "sft_data.jsonl")})})


def _merge(into: dict, extra: dict) -> dict:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
    return into


def demo_config(model: str | None = None, steps: tuple[int, int, int] | None = None) -> dict:
    """The shipped recipe (resources/recipes/demo_rlhf.yaml) with its data files resolved;
    ``model`` and ``steps`` (each stage's max_steps) shorten it for tests."""
    from tunelab import resources

    config = yaml.safe_load(resources.path("recipes/demo_rlhf.yaml").read_text())
    for i, stage in enumerate(config["stages"].values()):
        stage["data"] = str(resources.path(stage["data"]))
        if steps:
            stage["train"]["max_steps"] = steps[i]
    if model:
        config["model"] = {"name": model}
    return config
