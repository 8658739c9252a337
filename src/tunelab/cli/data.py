"""`tunelab data check`: validate a dataset and measure it."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import typer
from rich.table import Table

from tunelab.cli.app import data_app
from tunelab.cli.render import console, print_json
from tunelab.models.catalog import DEFAULT_MODEL

FIRST_LINES = 5
SOURCE_HELP = "data: .jsonl, .json, .csv, .parquet, a datasets folder or hf:ORG/NAME[:SPLIT]"
COLUMNS_HELP = "map source columns onto tunelab's fields: question=instruction,answer=output"
PLURAL = {"line": "lines", "row": "rows", "index": "indices"}  # what a finding's numbers count (data/sources.py)
TEMPLATE_HELP = "chat template for token counts: alpaca | chatml | llama3 | mistral | zephyr | FILE.jinja"


@data_app.command("check")
def check_cmd(
    file: str = typer.Argument(..., help=SOURCE_HELP + " to check"),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="model whose tokenizer and guidance apply"),
    max_length: int = typer.Option(None, "--max-length", help="count rows longer than this many tokens"),
    against: Path = typer.Option(None, "--against", help="another file (e.g. the test set): report rows in both"),
    near: float = typer.Option(0.8, "--near", min=0.0, max=1.0,
                               help="similarity (word 3-gram Jaccard) for near-duplicates; 0 turns it off"),
    plots: Path = typer.Option(None, "--plots", help="write a token-length histogram PNG into this folder"),
    columns: str = typer.Option(None, "--columns", help=COLUMNS_HELP),
    chat_template: str = typer.Option(None, "--chat-template", help=TEMPLATE_HELP),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Diagnose FILE: format errors with their lines, duplicates and near-duplicates, conflicting
    answers, outliers, personal data, train/test leakage, token lengths and data-size guidance.

    Exits 1 when the file has format errors, 0 otherwise (findings are advice, not errors).
    """
    from tunelab.data.doctor import diagnose
    from tunelab.data.sources import parse_columns

    report = diagnose(file, model, max_length, against=against, near=near or None, plots=plots,
                      columns=parse_columns(columns), chat_template=chat_template)
    if as_json:
        print_json(report.as_dict())
    else:
        _render(report, chat_template)
    raise typer.Exit(0 if report.ok else 1)


def _render(report, chat_template: str | None = None) -> None:
    console.print(f"[bold]{report.path}[/bold]: {report.rows} rows, format [cyan]{report.format or 'unknown'}[/cyan]")
    for title, findings, style in (("errors", report.errors, "red"), ("warnings", report.warnings, "yellow")):
        if not findings:
            console.print(f"{title}: none")
            continue
        by_kind: dict[str, list] = defaultdict(list)
        for f in findings:
            by_kind[f.kind].append(f)
        table = Table(title=f"{title}: {len(findings)}", title_style=style, title_justify="left")
        for col in ("kind", "count", f"first {PLURAL[report.unit]}", "example"):
            table.add_column(col, overflow="fold")
        for kind, items in sorted(by_kind.items(), key=lambda kv: -len(kv[1])):
            lines = ", ".join(str(f.line) for f in items[:FIRST_LINES]) + (" …" if len(items) > FIRST_LINES else "")
            table.add_row(kind, str(len(items)), lines, items[0].message)
        console.print(table)
    if report.findings:
        table = Table(title=f"findings: {len(report.findings)}", title_style="yellow", title_justify="left")
        for col in ("kind", "rows", PLURAL[report.unit], "what", "fix"):
            table.add_column(col, overflow="fold")
        for f in report.findings:
            lines = ", ".join(map(str, f.lines[:8])) + (" …" if len(f.lines) > 8 else "")
            table.add_row(f.kind, str(len(f.lines)), lines, f.message, f.fix)
        console.print(table)
    else:
        console.print("findings: none (no duplicates, conflicts, outliers, personal data or leakage)")
    if report.tokens:
        t = report.tokens
        template = chat_template or f"{report.guidance['model']}'s"
        console.print(f"tokens ({template} chat template): total {t['total']:,}, "
                      f"mean {t['mean']}, p95 {t['p95']}, max {t['max']}")
    if report.max_length:
        console.print(f"rows over --max-length {report.max_length}: {report.over_length}")
    if report.guidance:
        console.print(f"guidance: {report.guidance['text']}; {report.guidance['verdict']}")
    for plot in report.plots:
        console.print(f"plot: {plot}")


@data_app.command("prepare")
def prepare_cmd(
    file: str = typer.Argument(..., help=SOURCE_HELP + " to prepare (never modified)"),
    out: Path = typer.Option(..., "--out", help="folder for train/val/test.jsonl and the data card"),
    val: float = typer.Option(0.1, "--val", help="share of rows for validation"),
    test: float = typer.Option(0.1, "--test", help="share of rows for test"),
    seed: int = typer.Option(42, "--seed", help="seed of the split and the blend sample"),
    near: float = typer.Option(None, "--near", help="also drop near-duplicates at this similarity (e.g. 0.8)"),
    redact_pii: bool = typer.Option(False, "--redact-pii", help="replace personal data with <EMAIL>, <PHONE>, ..."),
    blend: str = typer.Option(None, "--blend", help="GENERAL.jsonl:RATIO: make RATIO of train general data"),
    to: str = typer.Option(None, "--to", help="write as chat | instruction | completion (default: as read)"),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="tokenizer used for token totals"),
    force: bool = typer.Option(False, "--force", help="replace a non-empty --out"),
    columns: str = typer.Option(None, "--columns", help=COLUMNS_HELP),
    chat_template: str = typer.Option(None, "--chat-template", help=TEMPLATE_HELP),
    as_json: bool = typer.Option(False, "--json", help="print the data card as JSON"),
) -> None:
    """Normalise, drop invalid rows, dedup, redact, split and blend FILE into --out, with a data card
    (data_card.json / .md) that accounts for every input row."""
    from tunelab.data.prepare import prepare_file
    from tunelab.data.sources import parse_columns

    card = prepare_file(file, out, val=val, test=test, seed=seed, near=near, redact_pii=redact_pii, blend=blend,
                        to=to, model=model, force=force, columns=parse_columns(columns), chat_template=chat_template)
    if as_json:
        print_json(card)
        return
    table = Table(title=f"{file} → {out}", title_justify="left")
    table.add_column("step")
    table.add_column("result", overflow="fold")
    for s in card["steps"]:
        table.add_row(s["step"], ", ".join(f"{k}={v}" for k, v in s.items() if k != "step"))
    console.print(table)
    for name, s in card["splits"].items():
        extra = f" ({s['blended']} from general data)" if s["blended"] else ""
        tokens = f", {s['tokens']:,} tokens" if "tokens" in s else ""
        console.print(f"{name}: {s['rows']} rows{extra}{tokens}")
    if card["dropped"]:
        console.print(f"dropped {len(card['dropped'])} rows ({PLURAL[card['source']['unit']]} and reasons in "
                      f"{out / 'data_card.md'})")
