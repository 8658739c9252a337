"""eval.json and report.md for a run: base vs tuned on the same rows."""

from __future__ import annotations

from tunelab.io import atomic_write_json, atomic_write_text
from tunelab.rundir import RunDir

METRICS = [("loss", "lower"), ("perplexity", "lower"), ("rougeL", "higher"), ("exact_match", "higher")]


def write(run: RunDir, result: dict) -> None:
    atomic_write_json(run.path / "eval.json", result)
    atomic_write_text(run.path / "report.md", markdown(run, result))


def markdown(run: RunDir, result: dict) -> str:
    s = run.summary()
    lines = [
        f"# Run `{run.name}`",
        "",
        f"- base model: `{s.get('model', '?')}`; method: `{s.get('method', '?')}`; "
        f"trainable parameters: {s.get('trainable', {}).get('trainable', '?'):,} "
        f"({s.get('trainable', {}).get('percent', '?')}%)" if s else "",
        f"- training: {s.get('steps', '?')} steps in {s.get('train_seconds', '?')} s, "
        f"final train loss {s.get('train_loss', '?')}, validation loss {s.get('eval_loss', '?')}" if s else "",
        f"- evaluated on {result['n']} rows of `{result.get('data', '?')}`",
        "",
        "## Base vs tuned",
        "",
        "| metric | base | tuned | better |",
        "|---|---:|---:|---|",
    ]
    for key, direction in METRICS:
        b, t = result["base"][key], result["tuned"][key]
        better = "tuned" if (t < b if direction == "lower" else t > b) else ("same" if t == b else "base")
        lines.append(f"| {key} ({direction} is better) | {b:.4f} | {t:.4f} | {better} |")
    if result.get("samples"):
        lines += ["", "## Samples", ""]
        for i, sample in enumerate(result["samples"], 1):
            lines += [
                f"### {i}. {_quote(sample['prompt'])}",
                "",
                f"- **reference:** {_quote(sample['reference'])}",
                f"- **base:** {_quote(sample['base'])}",
                f"- **tuned:** {_quote(sample['tuned'])}",
                "",
            ]
    return "\n".join(line for line in lines if line is not None) + "\n"


def _quote(text: str) -> str:
    return " ".join(text.split()) or "(empty)"
