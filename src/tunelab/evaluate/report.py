"""eval.json, report.md and a self-contained report.html for a run: base vs tuned.

eval.json is written by `tunelab eval` alone and has one shape:

    n, data              rows evaluated and the file they came from
    base, tuned          task scores per side: loss, perplexity, rougeL, bleu, exact_match, token_f1
    base_reused          base-side parts taken from an earlier evaluation ("task", "forgetting", "bias")
    overfitting          from the run's training log (evaluate.overfit)
    samples              the first rows side by side: prompt, reference, base, tuned
    forgetting           (unless switched off) base, tuned and delta of the general-knowledge probes
    bias                 (unless switched off) per-axis gaps, base vs tuned, and the amplified axes
    judge                (when asked) the pairwise judge's win rate and counts
    seconds              time the evaluation took, loading excluded
    plots                loss curves, relative to the run directory

What a training stage measures on its own held-out rows belongs to run.json, not here.
"""

from __future__ import annotations

import base64
import html
import json

from tunelab.io import atomic_write_json, atomic_write_text
from tunelab.rundir import RunDir

METRICS = [("loss", "lower"), ("perplexity", "lower"), ("rougeL", "higher"), ("bleu", "higher"),
           ("exact_match", "higher"), ("token_f1", "higher")]


def write(run: RunDir, result: dict) -> None:
    from tunelab.evaluate.plots import loss_curves

    plot = loss_curves(run.read_metrics(), run.path / "plots" / "loss.png", title=run.name)
    result = {**result, "plots": [str(plot.relative_to(run.path))] if plot else []}
    atomic_write_json(run.path / "eval.json", result)
    sections = build_sections(run, result)
    atomic_write_text(run.path / "report.md", to_markdown(run, sections))
    atomic_write_text(run.path / "report.html", to_html(run, sections, plot))


# Forgetting beyond these is flagged in the report with its remedy (train.blend).
QA_DROP_LIMIT = 0.05  # general-QA accuracy lost, absolute
PERPLEXITY_RATIO_LIMIT = 1.10  # general-prose perplexity, tuned / base


def forgetting_warning(delta: dict) -> str:
    """A sentence naming the forgetting that crossed a limit and the remedy, or ''."""
    found = []
    if delta["qa_accuracy_drop"] > QA_DROP_LIMIT:
        found.append(f"general-QA accuracy fell by {delta['qa_accuracy_drop']:.2f} (limit {QA_DROP_LIMIT})")
    if delta["prose_perplexity_ratio"] > PERPLEXITY_RATIO_LIMIT:
        found.append(f"general-prose perplexity rose x{delta['prose_perplexity_ratio']:.2f} "
                     f"(limit x{PERPLEXITY_RATIO_LIMIT})")
    if not found:
        return ""
    return (". **Forgetting flagged**: " + " and ".join(found) + ". Remedy: blend general data into training "
            "(`--set train.blend=general:0.1`, or FILE.jsonl:0.1 with your own general rows) and train again; "
            "a lower train.lr or fewer epochs also help.")


def _better(key: str, direction: str, b, t) -> str:
    if b is None or t is None or b == t:
        return "same"
    return "tuned" if (t < b if direction == "lower" else t > b) else "base"


def build_sections(run: RunDir, result: dict) -> list[tuple[str, list[list[str]] | str]]:
    """(title, table rows or text) pairs shared by the markdown and HTML reports."""
    s = run.summary()
    sections: list = []
    t = s.get("trainable", {})
    sections.append(("Run", [["base model", str(s.get("model", "?"))], ["method", str(s.get("method", "?"))],
                             ["trainable parameters", f"{t.get('trainable', 0):,} ({t.get('percent', '?')}%)"],
                             ["steps", str(s.get("steps", "?"))], ["train seconds", str(s.get("train_seconds", "?"))],
                             ["final train loss", str(s.get("train_loss", "?"))],
                             ["final validation loss", str(s.get("eval_loss", "?"))],
                             ["evaluated rows", f"{result['n']} of {result.get('data', '?')}"]]
                    + ([["base results reused", ", ".join(result["base_reused"])]] if result.get("base_reused") else [])))
    rows = [["metric", "base", "tuned", "better"]]
    for key, direction in METRICS:
        b, tv = result["base"].get(key), result["tuned"].get(key)
        if b is not None:
            rows.append([f"{key} ({direction} is better)", f"{b:.4f}", f"{tv:.4f}", _better(key, direction, b, tv)])
    sections.append(("Base vs tuned", rows))
    of = result.get("overfitting")
    if of:
        text = ("**Overfitting flagged**: " if of["flag"] else "No overfitting flagged: ") + of["reason"]
        if of.get("best_step") is not None:
            text += f". Best validation loss {of['best_eval_loss']} at step {of['best_step']}."
        sections.append(("Overfitting", text))
    fg = result.get("forgetting")
    if fg:
        rows = [["probe", "base", "tuned"],
                [f"general QA accuracy ({fg['base']['questions']} questions)", f"{fg['base']['qa_accuracy']:.4f}",
                 f"{fg['tuned']['qa_accuracy']:.4f}"],
                ["general prose perplexity", f"{fg['base']['prose_perplexity']:.3f}", f"{fg['tuned']['prose_perplexity']:.3f}"]]
        for d in fg["base"]["qa_by_domain"]:
            rows.append([f"  QA: {d}", f"{fg['base']['qa_by_domain'][d]:.3f}", f"{fg['tuned']['qa_by_domain'][d]:.3f}"])
        sections.append(("Catastrophic forgetting", rows))
        sections.append(("Forgetting delta", f"QA accuracy drop {fg['delta']['qa_accuracy_drop']:+.4f}; prose perplexity "
                                             f"ratio tuned/base {fg['delta']['prose_perplexity_ratio']:.4f}"
                                             + forgetting_warning(fg["delta"])))
    bias = result.get("bias")
    if bias:
        rows = [["axis", "base gap", "tuned gap", "change", "amplified"]]
        for axis, v in bias["axes"].items():
            rows.append([axis, f"{v['base_gap']:.4f}", f"{v['tuned_gap']:.4f}", f"{v['change']:+.4f}",
                         "yes" if v["amplified"] else "no"])
        sections.append((f"Bias (gap = spread of positive-minus-negative log-prob across groups; flag above "
                         f"+{bias['threshold']})", rows))
    judge = result.get("judge")
    if judge:
        sections.append(("Pairwise judge", f"tuned win rate {judge['tuned_win_rate']} "
                                           f"({judge['wins']} wins, {judge['ties']} ties, {judge['losses']} losses, "
                                           f"{judge['unclear']} unclear) by {judge['judge']}"))
    held_out = s.get("held_out")
    if isinstance(held_out, dict) and held_out:  # what a training stage measured on its own held-out rows
        sections.append((f"Held out during training ({s.get('stage', 'sft')})",
                         [["measure", "value"]] + [[k, str(v)] for k, v in held_out.items() if v is not None]))
    card = run.data / "data_card.json"
    if card.is_file():
        c = json.loads(card.read_text())
        rows = [["split", "rows", "tokens", "target tokens", "truncated"]]
        for name, sp in c.get("splits", {}).items():
            rows.append([name, str(sp["rows"]), str(sp["tokens"]), str(sp["target_tokens"]), str(sp["truncated"])])
        sections.append(("Data", rows))
    for i, smp in enumerate(result.get("samples", []), 1):
        sections.append((f"Sample {i}", [["prompt", smp["prompt"]], ["reference", smp["reference"]],
                                         ["base", smp["base"]], ["tuned", smp["tuned"]]]))
    return sections


def to_markdown(run: RunDir, sections) -> str:
    lines = [f"# Run `{run.name}`", ""]
    if (run.path / "plots" / "loss.png").is_file():
        lines += ["![loss curves](plots/loss.png)", ""]
    for title, body in sections:
        lines += [f"## {title}", ""]
        if isinstance(body, str):
            lines += [body, ""]
            continue
        if title.startswith("Sample") or title in ("Run",):
            lines += [f"- **{k}:** {_one_line(v)}" for k, v in body] + [""]
            continue
        head, *rest = body
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(_one_line(c) for c in r) + " |" for r in rest] + [""]
    return "\n".join(lines)


def to_html(run: RunDir, sections, plot) -> str:
    parts = [f"<!doctype html><meta charset='utf-8'><title>tunelab run {html.escape(run.name)}</title>",
             "<style>body{font:15px/1.5 system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.3em .7em;"
             "text-align:left;vertical-align:top;white-space:pre-wrap}th{background:#f3f3f3}"
             "h2{border-bottom:1px solid #ddd;padding-bottom:.2em}img{max-width:100%}</style>",
             f"<h1>Run <code>{html.escape(run.name)}</code></h1>"]
    if plot is not None:
        data = base64.b64encode(plot.read_bytes()).decode()
        parts.append(f"<img alt='loss curves' src='data:image/png;base64,{data}'>")
    for title, body in sections:
        parts.append(f"<h2>{html.escape(title)}</h2>")
        if isinstance(body, str):
            parts.append(f"<p>{html.escape(body).replace('**', '')}</p>")
            continue
        keyed = title.startswith("Sample") or title == "Run"
        rows = body if keyed else body[1:]
        parts.append("<table>")
        if not keyed:
            parts.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in body[0]) + "</tr>")
        for r in rows:
            cells = [f"<th>{html.escape(r[0])}</th>"] + [f"<td>{html.escape(c)}</td>" for c in r[1:]] if keyed \
                else [f"<td>{html.escape(c)}</td>" for c in r]
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</table>")
    return "\n".join(parts) + "\n"


def _one_line(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|") or "(empty)"
