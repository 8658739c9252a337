"""`data prepare`: clean, deduplicate, redact, split and blend a dataset, with a data card
that accounts for every input row."""

from __future__ import annotations

import random
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tunelab.data import dedup, pii
from tunelab.data.clean import normalise
from tunelab.data.load import write_jsonl
from tunelab.data.sources import UNITS, digest, kind_of
from tunelab.data.split import row_key, split_indices
from tunelab.data.validate import parse_file
from tunelab.errors import ConfigError, DataError
from tunelab.io import atomic_write_json, atomic_write_text

SPLITS = ("train", "val", "test")


@dataclass
class Options:
    val: float = 0.1
    test: float = 0.1
    seed: int = 42
    near: float | None = None  # drop near-duplicates at this similarity
    redact_pii: bool = False
    blend: tuple[str, float] | None = None  # (general file, share of the final train split)
    to: str | None = None  # chat | instruction (default: keep the input's format)
    columns: dict[str, str] | None = None  # source column -> tunelab field (data/sources.py)


@dataclass
class Row:
    line: int
    record: dict  # {"messages": [...]} or {"prompt": [...], "chosen": str, "rejected": str}
    source: str = "input"
    written: dict | None = None  # the record in the output format


@dataclass
class Card:
    source: dict
    steps: list[dict] = field(default_factory=list)
    dropped: list[dict] = field(default_factory=list)


def parse_blend(spec: str) -> tuple[str, float]:
    """'general.jsonl:0.2' -> ('general.jsonl', 0.2)."""
    path, _, ratio = spec.rpartition(":")
    try:
        share = float(ratio)
    except ValueError:
        share = -1.0
    if not path or not 0 < share < 1:
        raise ConfigError(f"--blend {spec!r}: expected FILE.jsonl:RATIO with 0 < RATIO < 1, e.g. general.jsonl:0.2")
    return path, share


def _texts(record: dict) -> list[str]:
    if "messages" in record:
        return [m["content"] for m in record["messages"]]
    return [m["content"] for m in record["prompt"]] + [record["chosen"], record["rejected"]]


def _map_texts(record: dict, fn) -> dict:
    if "messages" in record:  # other fields (a prompt row's reference answer) ride along untouched
        return {**record, "messages": [dict(m, content=fn(m["content"])) for m in record["messages"]]}
    return {"prompt": [dict(m, content=fn(m["content"])) for m in record["prompt"]],
            "chosen": fn(record["chosen"]), "rejected": fn(record["rejected"])}


def _key_messages(record: dict) -> list[dict]:
    if "messages" in record:
        return record["messages"]
    return record["prompt"] + [{"role": "assistant", "content": record["chosen"]},
                               {"role": "rejected", "content": record["rejected"]}]


def convert(record: dict, to: str) -> dict | None:
    """A record in the output format, or None when it cannot be expressed there."""
    if "messages" not in record or to == "chat":
        return record
    msgs = record["messages"]
    system = [m for m in msgs if m["role"] == "system"]
    rest = [m for m in msgs if m["role"] != "system"]
    if len(system) > 1 or len(rest) != 2 or rest[0]["role"] != "user" or rest[1]["role"] != "assistant":
        return None
    if to == "instruction":
        out = {"instruction": rest[0]["content"], "output": rest[1]["content"]}
    else:
        out = {"prompt": rest[0]["content"], "completion": rest[1]["content"]}
    if system:
        out["system"] = system[0]["content"]
    return out


def prepare(path: str | Path, out: str | Path, opts: Options, *, force: bool = False,
            count_tokens=None) -> dict:
    """Run every step, write ``out``/{train,val,test}.jsonl + data_card.json/.md; return the card."""
    src, out = Path(path), Path(out)
    if out.resolve() == src.resolve().parent or src.resolve().is_relative_to(out.resolve()):
        raise ConfigError(f"--out {out} holds the input file; choose a separate folder (the input is never overwritten)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise ConfigError(f"{out}: already exists and is not empty; choose another --out or pass --force")
    if opts.val < 0 or opts.test < 0 or opts.val + opts.test >= 1:
        raise ConfigError("--val and --test must be ≥ 0 and leave rows for train (val + test < 1)")
    parsed = parse_file(path, opts.columns)
    if opts.to and (parsed.is_preference or parsed.is_prompt_only):
        raise ConfigError("--to applies to chat/instruction/completion data, not preference pairs or prompts")
    if opts.blend and parsed.is_prompt_only:
        raise ConfigError("--blend mixes answered rows into training data; a prompt-only file has no answers")
    card = Card(source={"path": str(path), "sha256": digest(path), "format": parsed.format,
                        "unit": UNITS[kind_of(path)]})

    rows = _clean(parsed, opts, card)
    rows = _drop_groups(rows, dedup.exact_groups([_key_messages(r.record) for r in rows]),
                        "dedup_exact", "duplicate of line", card)
    if opts.near:
        texts = [dedup.text_of(_key_messages(r.record)) for r in rows]
        rows = _drop_groups(rows, dedup.near_groups(texts, opts.near), "dedup_near",
                            f"near-duplicate (≥{opts.near:.0%}) of line", card)

    # pairs and prompts are written as they are (a prompt as a chat ending on its user turn)
    fmt = opts.to or ("chat" if parsed.is_preference or parsed.is_prompt_only or parsed.format is None
                      else parsed.format)
    converted = []
    for r in rows:
        rec = convert(r.record, fmt)
        if rec is None:
            card.dropped.append({"line": r.line, "step": "convert", "reason": f"cannot be written as {fmt} "
                                 "(needs one user and one assistant message)"})
        else:
            converted.append(Row(r.line, r.record, r.source, rec))
    if len(converted) != len(rows):
        card.steps.append({"step": "convert", "to": fmt, "dropped": len(rows) - len(converted),
                           "rows_out": len(converted)})
    rows = converted
    if not rows:
        raise DataError(f"{src}: no valid rows left to split (see `tunelab data check {src}`)")

    keys = [row_key(_key_messages(r.record)) for r in rows]
    train_i, val_i, test_i = split_indices(keys, [opts.val, opts.test], opts.seed)
    splits = {"train": [rows[i] for i in train_i], "val": [rows[i] for i in val_i],
              "test": [rows[i] for i in test_i]}
    card.steps.append({"step": "split", "seed": opts.seed, **{k: len(v) for k, v in splits.items()}})

    if opts.blend:
        splits["train"] += _blend_rows(opts.blend, len(splits["train"]), opts.seed, fmt, card)
        random.Random(opts.seed).shuffle(splits["train"])

    result = {
        "source": card.source,
        "rows_in": card.steps[0]["rows_in"],
        "steps": card.steps,
        "dropped": card.dropped,
        "splits": {k: {"rows": len(v), "lines": sorted(r.line for r in v if r.source == "input"),
                       "blended": sum(r.source != "input" for r in v)} for k, v in splits.items()},
        "format": fmt,
    }
    if count_tokens is not None:
        for k, v in splits.items():
            result["splits"][k]["tokens"] = sum(count_tokens([_key_messages(r.record) for r in v])) if v else 0
    _write(out, splits, result, force)
    return result


def _clean(parsed, opts: Options, card: Card) -> list[Row]:
    """The valid rows (invalid ones go to the card's dropped list), normalised and, with
    ``opts.redact_pii``, with personal data replaced."""
    bad: dict[int, str] = {}
    for f in parsed.report.errors:
        if f.kind != "blank_line":
            bad.setdefault(f.line, f"{f.kind}: {f.message}")
    card.dropped += [{"line": ln, "step": "validate", "reason": r} for ln, r in sorted(bad.items())]
    if parsed.is_preference:
        records = parsed.pairs
    elif parsed.is_prompt_only:  # keep each prompt's other fields: rewards compare against them
        records = [{"messages": m, **extra} for m, extra in zip(parsed.messages, parsed.fields)]
    else:
        records = [{"messages": m} for m in parsed.messages]
    rows = [Row(ln, rec) for ln, rec in zip(parsed.lines, records)]
    card.steps.append({"step": "validate", "rows_in": len(rows) + len(bad), "dropped": len(bad), "rows_out": len(rows)})

    rows = [Row(r.line, _map_texts(r.record, normalise)) for r in rows]
    card.steps.append({"step": "normalise", "rows_out": len(rows)})
    if opts.redact_pii:
        counts: Counter = Counter()

        def scrub(text: str) -> str:
            new, matches = pii.redact(text)
            counts.update(m.kind for m in matches)
            return new

        rows = [Row(r.line, _map_texts(r.record, scrub)) for r in rows]
        card.steps.append({"step": "redact_pii", "rows_out": len(rows), "replaced": dict(counts)})
    return rows


def _drop_groups(rows: list[Row], groups: list[list[int]], step: str, reason: str, card: Card) -> list[Row]:
    drop = {}
    for g in groups:
        for i in g[1:]:
            drop[i] = f"{reason} {rows[g[0]].line}"
    card.dropped += [{"line": rows[i].line, "step": step, "reason": r} for i, r in sorted(drop.items())]
    card.steps.append({"step": step, "dropped": len(drop), "rows_out": len(rows) - len(drop)})
    return [r for i, r in enumerate(rows) if i not in drop]


def _blend_rows(spec: tuple[str, float], n_train: int, seed: int, fmt: str, card: Card) -> list[Row]:
    path, share = spec
    general = parse_file(path)
    if general.report.errors or general.is_preference or not general.messages:
        raise DataError(f"--blend {path}: needs a clean chat/instruction/completion file "
                        f"({len(general.report.errors)} errors; run `tunelab data check {path}`)")
    want = round(share / (1 - share) * n_train)
    pool = list(zip(general.lines, general.messages))
    random.Random(seed).shuffle(pool)
    picked = []
    for ln, msgs in pool[:want]:
        record = {"messages": [dict(m, content=normalise(m["content"])) for m in msgs]}
        picked.append(Row(ln, record, str(path), convert(record, fmt) or record))
    card.steps.append({"step": "blend", "file": str(path), "share": share, "wanted": want, "added": len(picked),
                       "note": "" if len(picked) == want else "general file smaller than asked; used all of it"})
    return picked


def _write(out: Path, splits: dict, card: dict, force: bool) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name in SPLITS:
            write_jsonl(tmp / f"{name}.jsonl", [r.written or r.record for r in splits[name]])
        atomic_write_json(tmp / "data_card.json", card)
        atomic_write_text(tmp / "data_card.md", card_markdown(card))
        if out.exists():
            shutil.rmtree(out) if force else out.rmdir()
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def card_markdown(card: dict) -> str:
    lines = [f"# Data card: `{card['source']['path']}`", "",
             f"- sha256: `{card['source']['sha256']}`", f"- input format: {card['source']['format']}; "
             f"written as: {card['format']}", f"- rows in: {card['rows_in']}", "", "## Steps", "",
             "| step | details |", "|---|---|"]
    for s in card["steps"]:
        lines.append(f"| {s['step']} | " + ", ".join(f"{k}={v}" for k, v in s.items() if k != "step") + " |")
    lines += ["", "## Splits", "", "| split | rows | from general data | tokens |", "|---|---:|---:|---:|"]
    for name, s in card["splits"].items():
        lines.append(f"| {name} | {s['rows']} | {s['blended']} | {s.get('tokens', '')} |")
    if card["dropped"]:
        lines += ["", f"## Dropped rows ({len(card['dropped'])})", "", f"| {card['source'].get('unit', 'line')} | step | reason |", "|---:|---|---|"]
        lines += [f"| {d['line']} | {d['step']} | {d['reason']} |" for d in card["dropped"]]
    return "\n".join(lines) + "\n"


def prepare_file(path: str | Path, out: str | Path, *, val: float = 0.1, test: float = 0.1, seed: int = 42,
                 near: float | None = None, redact_pii: bool = False, blend: str | None = None,
                 to: str | None = None, model: str | None = None, force: bool = False,
                 columns: dict[str, str] | None = None, chat_template: str | None = None) -> dict:
    """``prepare`` from plain arguments; token counts under ``model``'s chat template (or
    ``chat_template``) when a model is given."""
    if to not in (None, "chat", "instruction", "completion"):
        raise ConfigError(f"--to {to!r}: expected chat, instruction or completion")
    opts = Options(val=val, test=test, seed=seed, near=near, redact_pii=redact_pii,
                   blend=parse_blend(blend) if blend else None, to=to, columns=columns)
    counter = None
    if model:
        from tunelab.data.tokens import count_tokens
        from tunelab.models.load import load_tokenizer, resolve

        tokenizer = load_tokenizer(resolve(model), chat_template=chat_template)
        counter = lambda rows: count_tokens(tokenizer, rows)  # noqa: E731
    return prepare(path, out, opts, force=force, count_tokens=counter)
