"""RunConfig: everything a training run needs, typed and documented.

Sources are merged in order: defaults < YAML file < CLI flags < ``--set key=value``.
Unknown keys are errors (a typo must never be silently ignored). The resolved config, with
every default made explicit, is written to ``<run>/config.yaml``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, create_model, field_validator, model_validator
from pydantic_core import PydanticCustomError

from tunelab.errors import ConfigError
from tunelab.methods import METHODS
from tunelab.models.catalog import DEFAULT_MODEL


from tunelab.typed import Section as _Section


class ModelSection(_Section):
    name: str = Field(DEFAULT_MODEL, description="catalog name, Hugging Face id or local model folder")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="dtype the weights are loaded in; auto: bf16 for a frozen base under bf16 compute, else fp32")
    trust_remote_code: bool = Field(False, description="run model code from the Hub (only for models you trust)")


class DataSection(_Section):
    train: str | None = Field(None, description="training data: a .jsonl, .json, .csv or .parquet file, a datasets "
                                                "folder (save_to_disk) or hf:ORG/NAME[:SPLIT]")
    val: str | None = Field(None, description="validation data, any kind train takes; without it a seeded split of "
                                              "train is used")
    columns: dict[str, str] = Field(
        default_factory=dict, description="source column -> tunelab field, e.g. {question: instruction, answer: output}")
    chat_template: str | None = Field(
        None, description="chat template for a model without one, or to replace its own: "
                          "alpaca | chatml | llama3 | mistral | zephyr | FILE.jinja")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="share of train held out for validation when val is unset")
    max_length: int = Field(512, ge=16, description="rows longer than this many tokens are truncated")
    train_on_inputs: bool = Field(False, description="also compute the loss on system/user tokens")

    @field_validator("columns")
    @classmethod
    def _known_fields(cls, value: dict[str, str]) -> dict[str, str]:
        from tunelab.data.sources import check_columns

        return check_columns(value)


# One settings field per method, built from the registry: a new method needs no edit here.
MethodSection = create_model(
    "MethodSection",
    __base__=_Section,
    name=(str, Field("lora", description="fine-tuning method (see `tunelab train --help`)")),
    **{m.name: (m.settings_cls, Field(default_factory=m.settings_cls, description=f"settings for {m.name}"))
       for m in METHODS.values() if m.settings_cls},
)


class TrainSection(_Section):
    epochs: float | Literal["auto"] = Field(
        "auto", description="passes over the training data; auto: from the rows and answer tokens (train/auto.py)")
    max_steps: int = Field(-1, description="stop after this many optimizer steps (-1: use epochs)")
    lr: float | Literal["auto"] = Field(
        "auto", description="peak learning rate; auto: from the method and the model size (train/auto.py)")
    batch_size: int | Literal["auto"] = Field(
        "auto", description="rows per optimizer step (before accumulation); auto: from the rows and their length")
    time_budget: str | None = Field(
        None, description="finish training within this wall time (90s, 10m, 1h): the steps and the learning-rate "
                          "schedule are fitted to it after measuring the first steps")
    blend: str | None = Field(
        None, description="mix general data into training against forgetting: general:0.1 (the base model's own "
                          "answers to everyday requests) or FILE.jsonl:0.1 (share of the training rows)")
    grad_accum: int = Field(1, ge=1, description="gradient accumulation steps")
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="share of steps spent warming up the learning rate")
    scheduler: str = Field("cosine", description="learning-rate schedule (linear, cosine, constant, ...)")
    early_stopping_patience: int | None = Field(
        None, ge=1, description="stop after this many evaluations without a better validation loss")
    neftune_noise_alpha: float | None = Field(None, gt=0, description="NEFTune embedding noise (e.g. 5)")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping norm")
    bf16: Literal["auto", "on", "off"] = Field("auto", description="bf16 autocast: auto uses it where the CPU/GPU supports it")
    gradient_checkpointing: Literal["auto", "on", "off"] = Field(
        "auto", description="recompute activations to save memory; auto: SFT only when they would not fit, DPO on a "
                          "CPU (faster there)")
    stage: Literal["sft", "reward", "dpo", "ppo", "rloo", "grpo"] = Field(
        "sft", description="sft: supervised; reward: reward model from pairs; dpo: direct preference "
                           "optimisation; ppo/rloo: policy optimisation against <stage>.reward_model; grpo: group "
                           "relative policy optimisation against grpo.rewards (checks and reward models)")
    fast: bool = Field(True, description="the CPU fast path: padding-free batches, bf16 base, no needless recompute")
    logging_steps: int = Field(5, ge=1, description="log train loss every N steps")
    eval_steps: int | None = Field(None, ge=1, description="evaluate on validation every N steps (default: about 4 times a run)")
    save_steps: int | None = Field(None, ge=1, description="checkpoint every N steps (default: with each evaluation)")
    save_total_limit: int = Field(2, ge=1, description="checkpoints kept on disk")
    seed: int = Field(42, description="seed for data split, initialisation and sampling")
    distributed: Literal["auto", "ddp", "fsdp", "deepspeed"] = Field(
        "auto", description="how several processes share the work (--nproc-per-node): ddp copies the model to each, "
                            "fsdp and deepspeed shard it; auto: ddp")
    distributed_config: str | None = Field(
        None, description="FSDP or DeepSpeed settings: a shipped name (fsdp-full-shard, fsdp-offload, zero2, zero3) "
                          "or a JSON file; default: fsdp-full-shard or zero2")
    report_to: list[Literal["tensorboard", "mlflow", "wandb", "trackio"]] = Field(
        default_factory=list, description="experiment trackers to log to besides metrics.jsonl (tensorboard, mlflow, "
                                          "wandb, trackio); none by default")

    @field_validator("report_to", mode="before")
    @classmethod
    def _one_or_none(cls, value):
        # --set train.report_to=tensorboard and report_to: none read as one name and as no tracker
        if value is None or value == "none":
            return []
        return [value] if isinstance(value, str) else value

    @field_validator("time_budget", mode="before")
    @classmethod
    def _duration(cls, value):
        if value is not None:
            parse_duration(value)  # a bare number from YAML is seconds
        return None if value is None else str(value)

    @field_validator("blend")
    @classmethod
    def _blend_spec(cls, value):
        if value is not None:
            parse_blend_spec(value)
        return value

    @field_validator("epochs", "lr", "batch_size", mode="before")
    @classmethod
    def _auto_or_positive(cls, value, info):
        # one check for the word and the number, so an error names the key once and says what fits
        return auto_or_positive(value, whole=info.field_name == "batch_size")

    @field_validator("bf16", "gradient_checkpointing", mode="before")
    @classmethod
    def _bool_to_switch(cls, value):
        # YAML reads a bare on/off as a boolean
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value


# Each preference stage has its own section, named after it (the recipe in train/<stage>.py
# reads only its own). They live here, below train/, so a run directory's config loads
# without importing any trainer.
class DpoSection(_Section):
    """Direct preference optimisation (--stage dpo)."""

    beta: float = Field(0.1, gt=0, description="strength of the pull towards the reference (the base)")


class PolicySection(_Section):
    """What PPO, RLOO and GRPO share: where the policy starts, what scores it, how it samples."""

    reward_model: str | None = Field(None, description="run directory of a reward model (--stage reward)")
    init: str | None = Field(None, description="run directory of an SFT run to start the policy from "
                                               "(it is also the KL reference); default: the base model")
    kl_coef: float = Field(0.05, ge=0, description="KL penalty to the reference per token")
    rollout_batch: int = Field(16, ge=2, description="answers sampled per step")
    max_new_tokens: int = Field(48, ge=1, description="answer length budget during training")
    temperature: float = Field(1.0, gt=0, description="sampling temperature of the rollouts")
    eval_prompts: int = Field(32, ge=0, description="held-out prompts for the win rate against the reference")


class PpoSection(PolicySection):
    """Proximal policy optimisation (--stage ppo)."""

    mini_batch: int = Field(8, ge=1, description="rows per gradient update")
    ppo_epochs: int = Field(2, ge=1, description="passes over each rollout batch")
    clip: float = Field(0.2, gt=0, description="clip range of the probability ratio")
    vf_coef: float = Field(0.5, ge=0, description="weight of the value loss")
    gamma: float = Field(1.0, gt=0, le=1, description="discount")
    lam: float = Field(0.95, ge=0, le=1, description="GAE lambda")


class RlooSection(PolicySection):
    """REINFORCE leave-one-out through TRL (--stage rloo)."""

    num_generations: int = Field(4, ge=2, description="answers sampled per prompt")


# What each reward kind reads besides kind and weight: (required, optional).
REWARD_KEYS = {"exact": ({"field"}, {"pattern"}), "regex": ({"pattern"}, set()), "json": (set(), set()),
               "length": (set(), {"min", "max"}), "model": ({"run"}, set())}


class RewardSpec(_Section):
    """One reward of a GRPO run (train/rewards.py scores it)."""

    kind: Literal["exact", "regex", "json", "length", "model"] = Field(
        description="exact: the answer equals the prompt row's `field`; regex: `pattern` occurs in the answer; "
                    "json: the answer is a JSON object or array; length: the answer has min..max words; "
                    "model: the score of the reward-model run `run`")
    weight: float = Field(1.0, description="this reward's weight in the sum that GRPO maximises")
    field: str | None = Field(None, description="exact: the prompt rows' field holding the reference answer")
    pattern: str | None = Field(None, description="regex: the Python regular expression to find in the answer; "
                                                  "exact: compare only what it captures (its first group)")
    min: int | None = Field(None, ge=0, description="length: fewest words (fewer scores words/min)")
    max: int | None = Field(None, ge=1, description="length: most words (more scores max/words)")
    run: str | None = Field(None, description="model: run directory of a reward model (--stage reward)")

    @model_validator(mode="after")
    def _fits_its_kind(self):
        required, optional = REWARD_KEYS[self.kind]
        given = {k for k in ("field", "pattern", "min", "max", "run") if getattr(self, k) is not None}
        if required - given:
            raise PydanticCustomError("reward", "kind '{kind}' needs '{key}'", {"kind": self.kind,
                                                                                "key": sorted(required - given)[0]})
        if given - required - optional:
            raise PydanticCustomError("reward", "kind '{kind}' takes no '{key}' (it reads: {keys})",
                                      {"kind": self.kind, "key": sorted(given - required - optional)[0],
                                       "keys": ", ".join(sorted(required | optional | {"weight"}))})
        if self.kind == "length" and not given:
            raise PydanticCustomError("reward", "kind 'length' needs 'min', 'max' or both", {})
        if self.min is not None and self.max is not None and self.min > self.max:
            raise PydanticCustomError("reward", "'min' is above 'max'", {})
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise PydanticCustomError("reward", "'pattern' is not a valid regular expression ({why})",
                                          {"why": str(exc)}) from None
        return self


class GrpoSection(PolicySection):
    """Group relative policy optimisation through TRL (--stage grpo)."""

    num_generations: int = Field(4, ge=2, description="answers sampled per prompt; each is scored against its group")
    rewards: list[RewardSpec] = Field(
        default_factory=list, description="what GRPO maximises, summed with weights: [{kind: exact, field: answer}, "
                                          "{kind: regex, pattern: ..., weight: 0.5}, {kind: json}, {kind: length, "
                                          "min: 5, max: 200}, {kind: model, run: runs/rm}]; reward_model adds one more")


class EvalSection(_Section):
    limit: int | None = Field(None, ge=1, description="evaluate at most this many test rows")
    max_new_tokens: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto", description="generation budget per answer; auto: 1.5x the longest reference answer + 16 tokens (at most 512)")
    batch_size: int = Field(128, ge=1, description="rows generated together")
    samples: int = Field(3, ge=0, description="side-by-side samples shown in the report")
    probe_questions: int = Field(100, ge=0, description="general-knowledge questions asked for forgetting (0: all)")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="dtype for evaluation; auto: bf16 where supported (for a bf16-safe method)")
    reuse_base: bool = Field(True, description="reuse the base model's results from an earlier evaluation of the "
                                               "same base on the same rows and settings (kept under TUNELAB_HOME)")


class RunConfig(_Section):
    name: str | None = Field(None, description="run name (default: <method>-<timestamp>)")
    out_dir: str = Field("runs", description="folder holding run directories")
    model: ModelSection = Field(default_factory=ModelSection)
    data: DataSection = Field(default_factory=DataSection)
    method: MethodSection = Field(default_factory=MethodSection)
    train: TrainSection = Field(default_factory=TrainSection)
    eval: EvalSection = Field(default_factory=EvalSection)
    dpo: DpoSection = Field(default_factory=DpoSection)
    ppo: PpoSection = Field(default_factory=PpoSection)
    rloo: RlooSection = Field(default_factory=RlooSection)
    grpo: GrpoSection = Field(default_factory=GrpoSection)

    def policy(self) -> PolicySection:
        """The policy settings of this run's stage (PPO, RLOO or GRPO)."""
        return {"rloo": self.rloo, "grpo": self.grpo}.get(self.train.stage, self.ppo)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def auto_or_positive(value, whole: bool = False):
    """'auto' (any case) or a number above zero (a whole one when ``whole``)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not number > 0 or (whole and number != int(number)):
        raise ValueError(f"expected auto or a {'whole ' if whole else ''}number above 0")
    return int(number) if whole else number


_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> float:
    """'90s', '10m', '1.5h' or a bare number of seconds -> seconds."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*", str(text).lower())
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"] if match else 0.0
    if seconds <= 0:
        raise ValueError("expected a duration such as 90s, 10m or 1h")
    return seconds


def parse_blend_spec(text: str) -> tuple[str, float]:
    """'general:0.1' or 'extra.jsonl:0.2' -> (source, share of the blended training rows)."""
    source, _, ratio = str(text).rpartition(":")
    try:
        share = float(ratio)
    except ValueError:
        share = -1.0
    if not source or not 0 < share < 1:
        raise ValueError("expected general:SHARE or FILE.jsonl:SHARE with 0 < SHARE < 1, e.g. general:0.1")
    return source, share


def parse_set(item: str) -> tuple[list[str], Any]:
    """'train.lr=1e-4' -> (['train', 'lr'], 0.0001). Values are parsed as YAML scalars/lists."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.lr=1e-4")
    key, raw = item.split("=", 1)
    if raw.strip().lower() in ("on", "off", "yes", "no"):
        return key.strip().split("."), raw.strip().lower()  # keep words; pydantic reads them as bools where needed
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and _looks_float(raw):
        value = float(raw)  # YAML 1.1 reads '1e-4' as a string
    return key.strip().split("."), value


def _looks_float(raw: str) -> bool:
    try:
        float(raw)
        return True
    except ValueError:
        return False


def _set_path(data: dict, path: list[str], value: Any, original: str) -> None:
    node = data
    for part in path[:-1]:
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"--set {original}: '{part}' is not a section")
        node = nxt
    node[path[-1]] = value


def build_config(
    file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    sets: list[str] | None = None,
) -> RunConfig:
    """Merge a YAML file, flag overrides (dotted keys) and --set items into a RunConfig."""
    data: dict = {}
    if file is not None:
        path = Path(file)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of sections (model, data, method, train, eval)")
        data = loaded or {}
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_path(data, key.split("."), value, key)
    for item in sets or []:
        path_parts, value = parse_set(item)
        _set_path(data, path_parts, value, item)
    return validate(data, file)


def validate(data: dict, source: str | Path | None = None) -> RunConfig:
    if isinstance(data, dict) and "rl" in data:
        where = f"{source}: " if source else ""
        raise ConfigError(f"{where}the 'rl' section is now one section per stage: dpo (beta), ppo and rloo "
                          "(reward_model, init, kl_coef, rollout_batch, ...); rename rl.X to <stage>.X")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None


def _describe(exc: ValidationError, file) -> str:
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"])
    where = f"{file}: " if file else ""
    if err["type"] == "extra_forbidden":
        section = _section_at(err["loc"][:-1])
        valid = ", ".join(section.model_fields) if section else ""
        return f"{where}unknown config key '{key}'" + (f" (valid here: {valid})" if valid else "")
    more = f" (+{len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{where}config key '{key}': {err['msg']}, got {err.get('input')!r}{more}"


def _section_at(loc) -> type[BaseModel] | None:
    model: type[BaseModel] = RunConfig
    for part in loc:
        field = model.model_fields.get(str(part))
        ann = getattr(field, "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        model = ann
    return model


# Where each key of the old shared `rl` section went (runs written before the split).
_RL_KEYS = {"beta": ("dpo",), "num_generations": ("rloo",),
            **{k: ("ppo",) for k in ("mini_batch", "ppo_epochs", "clip", "vf_coef", "gamma", "lam")},
            **{k: ("ppo", "rloo") for k in ("reward_model", "init", "kl_coef", "rollout_batch", "max_new_tokens",
                                            "temperature", "eval_prompts")}}


def upgrade(data: dict) -> dict:
    """A saved run's config.yaml in today's shape: the old shared `rl` section's keys moved into
    the dpo, ppo and rloo sections, so runs trained before the split still load."""
    if not isinstance(data, dict) or not isinstance(data.get("rl"), dict):
        return data
    data = dict(data)
    for key, value in data.pop("rl").items():
        for section in _RL_KEYS.get(key, ()):
            data.setdefault(section, {})[key] = value
    return data


def describe(key: str) -> str:
    """The one-line description of a dotted config key ('train.lr'): the CLI's help for the
    flag that sets it, so each option's text is written once, beside its field."""
    model: type[BaseModel] = RunConfig
    *sections, name = key.split(".")
    for part in sections:
        model = model.model_fields[part].annotation
    description = model.model_fields[name].description
    return description.replace("%", "%%")  # click formats help text with %


def with_policy_sources(cfg: RunConfig, reward_model: str | None, init: str | None) -> RunConfig:
    """--reward-model / --init set the reward run and starting run of the policy stage."""
    if reward_model is None and init is None:
        return cfg
    stage = cfg.train.stage
    if stage not in ("ppo", "rloo", "grpo"):
        raise ConfigError(f"--reward-model and --init apply to --stage ppo, rloo or grpo, not '{stage}'")
    data = cfg.model_dump(mode="json")
    data[stage].update({k: v for k, v in {"reward_model": reward_model, "init": init}.items() if v is not None})
    return validate(data)
