"""The Python API. The CLI (and later the HTTP server) call only these functions.

    check_data(path)            -> Report
    train(cfg)                  -> RunDir
    evaluate(run, data)         -> dict (also writes eval.json and report.md)
    load_for_chat(target)       -> Chatter
    demo()                      -> dict
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tunelab import methods
from tunelab.config import RunConfig
from tunelab.data import dataset
from tunelab.data.formats import prompt_and_reference
from tunelab.data.load import write_jsonl
from tunelab.data.tokens import count_tokens, encode_prompt
from tunelab.data.validate import Report, parse_file, token_stats
from tunelab.errors import ConfigError, RunError
from tunelab.io import atomic_write_json, atomic_write_text
from tunelab.models import catalog
from tunelab.models.load import ModelRef, load_model, load_tokenizer, resolve
from tunelab.rundir import RunDir, open_run
from tunelab.inference.load import Loaded, load_run, resolve_dtype
from tunelab.train import fastpath
from tunelab.device import use_bf16
from tunelab.events import EventSink, no_events


# ---------------------------------------------------------------- data

def check_data(path: str | Path, model: str = catalog.DEFAULT_MODEL, max_length: int | None = None, *,
               against: str | Path | None = None, near: float | None = 0.8,
               plots: str | Path | None = None) -> Report:
    """Validate a dataset and diagnose it: format errors, duplicates, conflicts, outliers,
    personal data, token lengths with ``model``'s chat template, leakage into ``against``."""
    from tunelab.data import doctor

    parsed = parse_file(path)
    report = parsed.report
    ref = resolve(model)
    rows, lines = parsed.messages, parsed.lines
    lengths: list[int] = []
    if rows:
        lengths = count_tokens(load_tokenizer(ref), rows)
        report.tokens = token_stats(lengths)
        if max_length:
            report.max_length = max_length
            report.over_length = sum(n > max_length for n in lengths)
            report.findings += doctor.over_length(lengths, lines, max_length)
    report.findings += doctor.duplicates(rows, lines, near)
    if not parsed.is_preference:
        report.findings += doctor.conflicts(rows, lines)
    report.findings += doctor.outliers(rows, lines)
    report.findings += doctor.personal_data(rows, lines)
    if against is not None:
        other = parse_file(against)
        report.findings += doctor.leakage(rows, lines, other.messages)
    if plots is not None and lengths:
        from tunelab.data.plots import length_histogram

        report.plots.append(str(length_histogram(lengths, Path(plots) / "lengths.png", title=Path(path).name)))
    params = ref.params_b
    report.guidance = {**catalog.guidance(params), "model": ref.name,
                       "verdict": catalog.verdict(len(rows), params)}
    return report


def prepare_data(path: str | Path, out: str | Path, *, val: float = 0.1, test: float = 0.1, seed: int = 42,
                 near: float | None = None, redact_pii: bool = False, blend: str | None = None,
                 to: str | None = None, model: str | None = catalog.DEFAULT_MODEL, force: bool = False) -> dict:
    """Clean, dedup, redact, split (and blend) a dataset into ``out``; returns the data card."""
    from tunelab.data import prepare

    if to not in (None, "chat", "instruction", "completion"):
        raise ConfigError(f"--to {to!r}: expected chat, instruction or completion")
    opts = prepare.Options(val=val, test=test, seed=seed, near=near, redact_pii=redact_pii,
                           blend=prepare.parse_blend(blend) if blend else None, to=to)
    counter = None
    if model:
        tokenizer = load_tokenizer(resolve(model))
        counter = lambda rows: count_tokens(tokenizer, rows)  # noqa: E731
    return prepare.prepare(path, out, opts, force=force, count_tokens=counter)


def estimate(data: str | Path, *, model: str = catalog.DEFAULT_MODEL, method: str = "lora",
             epochs: float = 3.0) -> dict:
    """Training tokens, API price and self-hosted FLOPs/time/memory for fine-tuning on ``data``."""
    from tunelab import cost
    from tunelab.models.load import model_params

    methods.get(method)
    if epochs <= 0:
        raise ConfigError(f"--epochs must be positive, got {epochs}")
    conversations = dataset.load_conversations(data)
    ref = resolve(model)
    tokens = sum(count_tokens(load_tokenizer(ref), conversations))
    result = cost.estimate(tokens, epochs, model_params(ref), method)
    return {"data": str(data), "rows": len(conversations), "model": ref.name, **result}


# ---------------------------------------------------------------- train

def run_path(cfg: RunConfig) -> Path:
    stage = "" if cfg.train.stage == "sft" else f"{cfg.train.stage}-"
    name = cfg.name or f"{stage}{cfg.method.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    return Path(cfg.out_dir) / name


def train(cfg: RunConfig, *, out: str | Path | None = None, resume: str | Path | None = None,
          events: EventSink = no_events) -> RunDir:
    """Fine-tune ``cfg.model`` on ``cfg.data`` and write a run directory; or resume one."""
    from tunelab.train import sft

    checkpoint = None
    if resume is None and cfg.train.stage != "sft":
        from tunelab.train import stages

        stages.check(cfg)
        run = RunDir(Path(out) if out else run_path(cfg))
        stages.run(cfg, run, events)
        return run
    if resume is not None:
        run = open_run(resume)
        cfg = run.config()
        if cfg.train.stage != "sft":
            raise ConfigError(f"{run.path}: --resume continues supervised runs; a {cfg.train.stage} run starts over")
        checkpoint = str(run.latest_checkpoint())
        train_rows = dataset.load_conversations(run.data / "train.jsonl")
        val_file = run.data / "val.jsonl"
        val_rows = dataset.load_conversations(val_file) if val_file.is_file() else []
    else:
        if not cfg.data.train:
            raise ConfigError("no training data: pass --data FILE.jsonl (or data.train in the config)")
        methods.get(cfg.method.name)  # an unknown method fails before any data is read
        train_rows = dataset.load_conversations(cfg.data.train)
        if cfg.data.val:
            val_rows = dataset.load_conversations(cfg.data.val)
        else:
            train_rows, val_rows = dataset.split_train_val(train_rows, cfg.data.val_fraction, cfg.train.seed)
        run = RunDir(Path(out) if out else run_path(cfg))
        if run.path.exists() and any(run.path.iterdir()):
            raise RunError(f"{run.path}: already exists and is not empty; choose another --out or --resume it")
        cfg = cfg.model_copy(update={"name": run.name})
    method = methods.get(cfg.method.name)
    settings = method.settings(cfg.method)
    load_kwargs = method.load_kwargs(settings)  # fails early (e.g. no 4-bit support) before writing anything

    ref = resolve(cfg.model.name)
    tokenizer = load_tokenizer(ref, cfg.model.trust_remote_code)
    enc_train = dataset.encode_split(tokenizer, train_rows, cfg.data.max_length, cfg.data.train_on_inputs)
    enc_val = dataset.encode_split(tokenizer, val_rows, cfg.data.max_length, cfg.data.train_on_inputs)
    if not enc_train.rows:
        raise ConfigError(f"no training row has an answer token within data.max_length={cfg.data.max_length}")

    if checkpoint is None:
        run.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run.config_file, cfg.to_yaml())
        write_jsonl(run.data / "train.jsonl", [{"messages": m} for m in train_rows])
        if val_rows:
            write_jsonl(run.data / "val.jsonl", [{"messages": m} for m in val_rows])
        atomic_write_json(run.data / "data_card.json", dataset.data_card(
            {"train": cfg.data.train, "val": cfg.data.val}, {"train": enc_train, "val": enc_val}))

    dtype = resolve_dtype(cfg.model.dtype, method.name, cfg.train.bf16 if cfg.train.fast else "off")
    if cfg.train.fast:
        fastpath.set_threads()
    model = load_model(ref, dtype, cfg.model.trust_remote_code, **load_kwargs)
    _seed(cfg.train.seed)  # the adapter's initial weights follow train.seed, not whatever ran before
    model = method.apply(model, settings)
    trainable = methods.trainable_summary(model)
    trainable["model_mb"] = round(_footprint(model) / 2**20, 1)
    events({"event": "trainable", **trainable})

    summary = sft.run(model, tokenizer, enc_train.rows, enc_val.rows, cfg, run,
                      resume_from=checkpoint, events=events)
    methods.save_atomically(method, model, tokenizer, run.model if method.saves == "model" else run.adapter)
    atomic_write_json(run.summary_file, {
        "model": ref.name, "method": method.name, "trainable": trainable,
        "train_rows": len(enc_train.rows), "val_rows": len(enc_val.rows), "base_dtype": dtype, **summary,
    })
    return run


def _seed(seed: int) -> None:
    from transformers import set_seed

    set_seed(seed)


def _footprint(model) -> int:
    """Bytes of the model's weights and buffers as held in memory (4-bit weights count as packed)."""
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


# ---------------------------------------------------------------- load a run or a model

def load(target: str | Path, dtype: str = "float32", *, dequantize: bool = False) -> Loaded:
    """A run directory (base + trained weights) or a base model, ready for inference."""
    return load_run(target, "chat", dtype, dequantize=dequantize)


def reply(loaded: Loaded, messages: list[dict], *, max_new_tokens: int = 256,
          temperature: float = 0.0, top_p: float = 1.0) -> str:
    """One assistant answer to a conversation."""
    from tunelab.inference.generate import generate

    prompt = encode_prompt(loaded.tokenizer, messages)
    return generate(loaded.model, loaded.tokenizer, [prompt], max_new_tokens=max_new_tokens, seed=None,
                    batch_size=1, temperature=temperature, top_p=top_p)[0]


# ---------------------------------------------------------------- evaluate

def evaluate(target: str | Path, data: str | Path, *, limit: int | None = None, forgetting: bool = True,
             bias: bool = True, judge: str | None = None, judge_key: str | None = None,
             fresh_base: bool = False, events: EventSink = no_events) -> dict:
    """Base vs tuned on the same rows (loss, perplexity, ROUGE-L, BLEU, exact match, token F1,
    samples), plus general-knowledge forgetting, bias probes, overfitting and an optional judge.
    Writes eval.json, report.md and report.html into the run.

    The base model's results are reused from an earlier evaluation of the same base on the same
    rows with the same settings (``eval.reuse_base``); ``fresh_base`` computes them again."""
    from contextlib import nullcontext

    from tunelab.evaluate import basecache
    from tunelab.evaluate import bias as bias_probe
    from tunelab.evaluate import forgetting as forget
    from tunelab.evaluate import metrics, overfit, report
    from tunelab.inference.generate import generate, generate_and_score, is_prompt_learning

    run = open_run(target)
    cfg = run.config()
    rows = dataset.load_conversations(data)
    limit = limit or cfg.eval.limit
    rows = rows[:limit] if limit else rows
    method = methods.get(cfg.method.name)
    dtype = resolve_dtype(cfg.eval.dtype, method.name)
    loaded = load(run.path, dtype)
    base_model = None if loaded.is_adapter else load_model(loaded.ref, dtype, cfg.model.trust_remote_code)
    tok = loaded.tokenizer
    prompts, refs = zip(*(prompt_and_reference(m) for m in rows))
    refs = list(refs)
    prompt_ids = [encode_prompt(tok, p) for p in prompts]
    encoded = dataset.encode_split(tok, list(rows), cfg.data.max_length, False).rows
    continuations = _continuations(tok, rows, prompt_ids, cfg.data.max_length)
    questions = forget.probe_questions()
    if cfg.eval.probe_questions and len(questions) > cfg.eval.probe_questions:
        step = len(questions) / cfg.eval.probe_questions
        questions = [questions[int(i * step)] for i in range(cfg.eval.probe_questions)]

    def model_for(name: str):
        model = loaded.model if name == "tuned" or base_model is None else base_model
        ctx = methods.base_only(loaded.model) if (name == "base" and loaded.is_adapter) else nullcontext()
        return model, ctx

    def gen(model, name: str, ids: list[list[int]], max_new: int, label: str) -> list[str]:
        events({"event": "eval_side", "side": f"{label} ({name})", "total": len(ids)})
        return generate(model, tok, ids, max_new_tokens=max_new, batch_size=cfg.eval.batch_size,
                        progress=lambda k: events({"event": "generated", "side": f"{label} ({name})", "n": k}))

    max_new = cfg.eval.max_new_tokens
    if max_new == "auto":  # room for every reference answer, not for a base model's rambling
        longest = max((len(ids) for ids in tok(refs, add_special_tokens=False)["input_ids"]), default=64)
        max_new = min(512, int(1.5 * longest) + 16)

    identity = None
    if cfg.eval.reuse_base:
        identity = basecache.base_identity(loaded.ref.source, base_model if base_model is not None else loaded.model)
    reused: list[str] = []

    def once(name: str, part: str, settings: dict, compute, required: tuple[str, ...]):
        """The base side's ``part`` as an earlier evaluation left it, or computed (and kept;
        with ``fresh_base``, computed again and kept in place of the earlier one)."""
        if name != "base" or identity is None:
            return compute()
        key = basecache.key(identity, part, {"dtype": dtype, "trust_remote_code": cfg.model.trust_remote_code,
                                             **basecache.runtime(model_for(name)[0]), **settings})
        value = None if fresh_base else basecache.get(key, required)
        if value is None:
            value = compute()
            basecache.put(key, value)
        else:
            reused.append(part)
            events({"event": "note", "text": f"{part} (base): reused from an earlier eval"})
        return value

    def side(name: str) -> dict:
        if name == "tuned" and loaded.is_adapter and method.can_merge and not getattr(loaded.model, "is_quantized", False):
            # the base side is done. In fp32, fold the adapter into the weights so decoding runs
            # plain matmuls. In bf16 that would round small updates away (W + dW stored in 8
            # bits of mantissa); keep the adapter beside the weights but in the same dtype, which
            # saves casting every activation to fp32 for it (100 calendar rows: 23.4 s -> 15.7 s,
            # 99 of 100 answers identical).
            if dtype == "float32":
                loaded.model = loaded.model.merge_and_unload()
            else:
                import torch

                for param in loaded.model.parameters():
                    if param.dtype == torch.float32:
                        param.data = param.data.to(_torch_dtype(dtype))
        model, ctx = model_for(name)
        prompt_learning = is_prompt_learning(model)

        def task() -> dict:
            if continuations and not prompt_learning:  # one prefill serves loss and answers
                events({"event": "eval_side", "side": f"task ({name})", "total": len(prompt_ids)})
                answers, loss = generate_and_score(
                    model, tok, prompt_ids, continuations, max_new_tokens=max_new, batch_size=cfg.eval.batch_size,
                    progress=lambda k: events({"event": "generated", "side": f"task ({name})", "n": k}))
            else:
                loss = metrics.reference_loss(model, encoded, batch_size=cfg.eval.batch_size)
                answers = gen(model, name, prompt_ids, max_new, "task")
            return {"answers": answers, "loss": loss}

        with ctx:
            scored = once(name, "task", {
                "prompts": prompt_ids, "max_new_tokens": max_new, "batch_size": cfg.eval.batch_size,
                "prompt_learning": prompt_learning,
                "references": continuations if continuations and not prompt_learning
                else [[e.input_ids, e.labels] for e in encoded]}, task, ("answers", "loss"))
            answers, loss = scored["answers"], scored["loss"]
            out: dict = {"scores": {
                "loss": round(loss, 4),
                "perplexity": round(metrics.perplexity(loss), 4),
                "rougeL": round(metrics.rouge_l(answers, refs), 4),
                "bleu": round(metrics.bleu(answers, refs), 4),
                "exact_match": round(metrics.exact_match(answers, refs), 4),
                "token_f1": round(metrics.token_f1(answers, refs), 4),
            }, "answers": answers}
            if forgetting:
                q_ids = [encode_prompt(tok, [{"role": "user", "content": q["question"]}]) for q in questions]
                ask = lambda _qs: gen(model, name, q_ids, 24, "general QA")  # noqa: E731
                out["forgetting"] = once(name, "forgetting", {
                    "questions": questions, "prompts": q_ids, "batch_size": cfg.eval.batch_size,
                    "prompt_learning": prompt_learning, "prose": forget.probe_prose()},
                    lambda: forget.side(model, tok, ask, rows=questions), ("qa_accuracy", "prose_perplexity"))
            if bias:
                def probe() -> dict:
                    events({"event": "note", "text": f"bias probes ({name})"})
                    return bias_probe.scores(model, tok)

                out["bias"] = once(name, "bias", {"probes": bias_probe.probes(), "prompt_learning": prompt_learning},
                                   probe, tuple(bias_probe.probes()["axes"]))
        return out

    start = time.perf_counter()
    base, tuned = side("base"), side("tuned")
    result = {
        "n": len(rows),
        "data": str(data),
        "base": base["scores"],
        "tuned": tuned["scores"],
        "base_reused": reused,
        "overfitting": overfit.analyse(run.read_metrics()),
        "samples": [
            {"prompt": prompts[i][-1]["content"], "reference": refs[i],
             "base": base["answers"][i], "tuned": tuned["answers"][i]}
            for i in range(min(cfg.eval.samples, len(rows)))
        ],
    }
    if forgetting:
        result["forgetting"] = {"base": base["forgetting"], "tuned": tuned["forgetting"],
                                "delta": forget.delta(base["forgetting"], tuned["forgetting"])}
    if bias:
        result["bias"] = bias_probe.compare(base["bias"], tuned["bias"])
    if judge:
        from tunelab.evaluate import judge as judging

        events({"event": "note", "text": f"judging with {judge}"})
        verdicts = judging.win_rate(judging.make_judge(judge, judge_key), [p[-1]["content"] for p in prompts], refs,
                                    base["answers"], tuned["answers"], seed=cfg.train.seed)
        result["judge"] = {"judge": judge, **verdicts}
    result["seconds"] = round(time.perf_counter() - start, 1)
    previous = run.path / "eval.json"
    if previous.is_file():
        import json

        old = json.loads(previous.read_text())
        pref = old.get("preference") or (old if "stage" in old else None)
        if pref:
            result["preference"] = pref  # a preference stage's own measurements stay with the run
    report.write(run, result)
    return result


def _continuations(tok, rows, prompt_ids, max_length) -> list[tuple[list[int], list[int]]] | None:
    """Each row's reference answer as (token ids, labels) continuing its generation prompt, or
    None when some row's training encoding does not start with that prompt (a chat template
    that renders the prompt differently once the answer follows) or scores earlier turns."""
    out = []
    for messages, prompt in zip(rows, prompt_ids):
        enc = dataset.encode_chat(tok, list(messages), max_length, False)
        n = len(prompt)
        if enc.input_ids[:n] != prompt or any(label != -100 for label in enc.labels[:n]):
            return None
        out.append((enc.input_ids[n:], enc.labels[n:]))
    return out


def reward(run_dir: str | Path, prompt: str, responses: list[str]) -> list[float]:
    """Reward-model scores of ``responses`` to one user prompt."""
    from tunelab.train.preference import RewardScorer

    scorer = RewardScorer.from_run(run_dir)
    return scorer.score([[{"role": "user", "content": prompt}]] * len(responses), responses)




def rlhf(config: str | Path | dict, *, out: str | Path = "runs/rlhf", events: EventSink = no_events) -> dict[str, Path]:
    """SFT -> reward model -> PPO (or RLOO) from one YAML file. Shared sections (model, method, train, rl,
    ...) apply to every stage; ``stages.<name>`` overrides them for one stage, with ``data`` as
    a shortcut for data.train. The SFT stage may read the preference file: it then trains on
    each prompt with its chosen answer. The policy stage starts from the SFT run and is scored by
    the reward run."""
    import copy

    import yaml

    from tunelab.config import validate

    if isinstance(config, dict):
        path, shared = "rlhf config", copy.deepcopy(config)
    else:
        path = Path(config)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            shared = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    stages = shared.pop("stages", None) if isinstance(shared, dict) else None
    names = list(stages) if isinstance(stages, dict) else []
    if names not in (["sft", "reward", "ppo"], ["sft", "reward", "rloo"]) or not all(stages.values()):
        raise ConfigError(f"{path}: needs a 'stages' section with sft, reward and ppo (or rloo), in that order, "
                          "each at least {data: FILE}; shared sections apply to all three")
    policy = names[2]
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise RunError(f"{out}: already exists and is not empty; choose another --out")
    cfgs = {}
    for name in names:
        data, stage = copy.deepcopy(shared), stages[name]
        if isinstance(stage, str):
            stage = {"data": stage}
        if not isinstance(stage, dict):
            raise ConfigError(f"{path}: stages.{name} must be a mapping such as {{data: FILE}}")
        if isinstance(stage.get("data"), str):
            stage["data"] = {"train": stage["data"]}
        _merge(data, stage)
        _merge(data, {"train": {"stage": name}})
        if name == policy:
            _merge(data, {"rl": {"reward_model": str(out / "reward"), "init": str(out / "sft")}})
        cfgs[name] = validate(data, f"{path} (stage {name})")
    from tunelab.train import stages as stage_runs

    for name in ("reward", policy):  # fail before the first stage trains, not after it
        stage_runs.check(cfgs[name])
    if not cfgs["sft"].data.train:
        raise ConfigError(f"{path}: stages.sft needs data (a chat/instruction file, or the preference pairs)")
    if cfgs["sft"].method.name not in stage_runs.ADAPTER_METHODS:
        raise ConfigError(f"{path}: the SFT stage must train a LoRA-family adapter ({', '.join(stage_runs.ADAPTER_METHODS)}) "
                          f"for the {policy.upper()} policy to start from; got '{cfgs['sft'].method.name}'")
    out.mkdir(parents=True, exist_ok=True)
    sft_cfg = cfgs["sft"]
    if dataset.parse_file(sft_cfg.data.train).is_preference:
        rows = [{"messages": p["prompt"] + [{"role": "assistant", "content": p["chosen"]}]}
                for p in dataset.load_pairs(sft_cfg.data.train)]
        write_jsonl(out / "sft_data.jsonl", rows)
        sft_cfg = sft_cfg.model_copy(update={"data": sft_cfg.data.model_copy(update={"train": str(out / "sft_data.jsonl")})})
    events({"event": "note", "text": "stage 1/3: supervised fine-tuning"})
    runs = {"sft": train(sft_cfg, out=out / "sft", events=events).path}
    events({"event": "note", "text": "stage 2/3: reward model"})
    runs["reward"] = train(cfgs["reward"], out=out / "reward", events=events).path
    events({"event": "note", "text": f"stage 3/3: {policy.upper()} against the reward model, starting from the SFT run"})
    runs[policy] = train(cfgs[policy], out=out / policy, events=events).path
    return runs


def _merge(into: dict, extra: dict) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def compare(run_dirs: list[str | Path]) -> list[dict]:
    """One row per run: method, size, training and (when evaluated) evaluation numbers."""
    import json

    rows = []
    for path in run_dirs:
        run = open_run(path)
        s = run.summary()
        ev = json.loads((run.path / "eval.json").read_text()) if (run.path / "eval.json").is_file() else {}
        fg, bias, of = ev.get("forgetting"), ev.get("bias"), ev.get("overfitting")
        rows.append({
            "run": run.name, "method": s.get("method"), "trainable %": s.get("trainable", {}).get("percent"),
            "steps": s.get("steps"), "train loss": s.get("train_loss"), "val loss": s.get("eval_loss"),
            "rougeL": ev.get("tuned", {}).get("rougeL"), "exact_match": ev.get("tuned", {}).get("exact_match"),
            "QA drop": fg["delta"]["qa_accuracy_drop"] if fg else None,
            "ppl ×": fg["delta"]["prose_perplexity_ratio"] if fg else None,
            "bias amplified": bias["amplified"] if bias else None,
            "overfit": (f"from step {of['began_at_step']}" if of["flag"] else "no") if of else None,
        })
    return rows


# ---------------------------------------------------------------- demo

DEMO_TEST_ROWS = 40


def demo(out: str | Path = "runs/demo", *, sets: list[str] | None = None, events: EventSink = no_events) -> dict:
    """Train LoRA on the bundled calendar-entry dataset and compare base vs tuned on held-out rows."""
    from tunelab import resources
    from tunelab.config import build_config
    from tunelab.data.split import row_key, split_indices

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise RunError(f"{out}: already exists and is not empty; pass another --out")
    rows = dataset.load_conversations(resources.path("demo_calendar.jsonl"))
    frac = DEMO_TEST_ROWS / len(rows)
    train_idx, test_idx = split_indices([row_key(r) for r in rows], [frac], seed=0)
    data_dir = out / "demo-data"
    write_jsonl(data_dir / "train.jsonl", [{"messages": rows[i]} for i in train_idx])
    write_jsonl(data_dir / "test.jsonl", [{"messages": rows[i]} for i in test_idx])
    cfg = build_config(overrides=DEMO_SETTINGS | {"data.train": str(data_dir / "train.jsonl")}, sets=sets)
    start = time.perf_counter()
    run = train(cfg, out=out / "run", events=events)
    result = evaluate(run.path, data_dir / "test.jsonl", events=events)
    return {"run": str(run.path), "seconds": round(time.perf_counter() - start, 1),
            "summary": run.summary(), "eval": result}


def demo_rlhf(out: str | Path = "runs/demo-rlhf", *, model: str | None = None, steps: tuple[int, int, int] = (10, 30, 12),
              events: EventSink = no_events) -> dict[str, Path]:
    """SFT -> reward model -> PPO on the shipped preference pairs (concise over rambling answers),
    with the recipe bench/rlhf.py measures: 701 s on a 2-core CPU."""
    import yaml

    from tunelab import resources

    pairs = str(resources.path("prefs_concise.jsonl"))
    sft, reward_steps, ppo = steps
    config = {
        "train": {"batch_size": 8},
        "rl": {"rollout_batch": 16, "mini_batch": 8, "max_new_tokens": 48, "eval_prompts": 40},
        "stages": {"sft": {"data": pairs, "train": {"max_steps": sft, "lr": 2e-4}},
                   "reward": {"data": pairs, "train": {"max_steps": reward_steps, "lr": 5e-4}},
                   "ppo": {"data": pairs, "train": {"max_steps": ppo, "lr": 3e-4}}},
    }
    if model:
        config["model"] = {"name": model}
    runs = rlhf(config, out=out, events=events)
    atomic_write_text(Path(out) / "rlhf.yaml", yaml.safe_dump(config, sort_keys=False))  # the recipe, for a rerun
    return runs


# The demo's recipe: LoRA defaults, a short run sized to finish in minutes on a 2-core CPU.
DEMO_SETTINGS = {
    "train.max_steps": 40,
    "train.batch_size": 4,
    "train.lr": 4e-4,
    "eval.max_new_tokens": 64,
}


# ---------------------------------------------------------------- export

def export(target: str | Path, out: str | Path, *, merge: bool = False, force: bool = False) -> dict:
    """Copy a run's trained weights to ``out``, or (``merge``) write one merged model folder
    (safetensors + tokenizer) that loads with plain transformers."""
    run = open_run(target)
    cfg = run.config()
    method = methods.get(cfg.method.name)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise RunError(f"{out}: already exists and is not empty; choose another --out or pass --force")
    if merge and not method.can_merge:
        raise ConfigError(f"method '{method.name}' cannot be merged into the base weights "
                          "(it adds tokens or layers rather than changing weights); export without --merge "
                          "to get the adapter, which loads on the base with tunelab or peft")
    weights = run.weights()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if not merge or method.saves == "model":
            shutil.copytree(weights, tmp, dirs_exist_ok=True)
            kind = "model" if method.saves == "model" else "adapter"
        else:
            loaded = load(run.path, dequantize=True)
            merged = loaded.model.merge_and_unload()
            merged.save_pretrained(tmp)
            loaded.tokenizer.save_pretrained(tmp)
            kind = "merged model"
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"run": str(run.path), "out": str(out), "method": method.name, "kind": kind}
