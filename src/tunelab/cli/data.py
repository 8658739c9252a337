"""`tunelab data check`: validate a dataset and measure it."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import typer
from rich.table import Table

from tunelab import api
from tunelab.cli.app import data_app
from tunelab.cli.render import console, print_json
from tunelab.models.catalog import DEFAULT_MODEL

FIRST_LINES = 5


@data_app.command("check")
def check_cmd(
    file: Path = typer.Argument(..., help="JSONL file to check"),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="model whose tokenizer and guidance apply"),
    max_length: int = typer.Option(None, "--max-length", help="count rows longer than this many tokens"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Validate FILE (format, every error with its line) and show token lengths and data-size guidance.

    Exits 1 when the file has errors, 0 when it is clean.
    """
    report = api.check_data(file, model=model, max_length=max_length)
    if as_json:
        print_json(report.as_dict())
    else:
        _render(report)
    raise typer.Exit(0 if report.ok else 1)


def _render(report) -> None:
    console.print(f"[bold]{report.path}[/bold]: {report.rows} rows, format [cyan]{report.format or 'unknown'}[/cyan]")
    for title, findings, style in (("errors", report.errors, "red"), ("warnings", report.warnings, "yellow")):
        if not findings:
            console.print(f"{title}: none")
            continue
        by_kind: dict[str, list] = defaultdict(list)
        for f in findings:
            by_kind[f.kind].append(f)
        table = Table(title=f"{title}: {len(findings)}", title_style=style, title_justify="left")
        for col in ("kind", "count", "first lines", "example"):
            table.add_column(col, overflow="fold")
        for kind, items in sorted(by_kind.items(), key=lambda kv: -len(kv[1])):
            lines = ", ".join(str(f.line) for f in items[:FIRST_LINES]) + (" …" if len(items) > FIRST_LINES else "")
            table.add_row(kind, str(len(items)), lines, items[0].message)
        console.print(table)
    if report.tokens:
        t = report.tokens
        console.print(f"tokens ({report.guidance['model']} chat template): total {t['total']:,}, "
                      f"mean {t['mean']}, p95 {t['p95']}, max {t['max']}")
    if report.max_length:
        console.print(f"rows over --max-length {report.max_length}: {report.over_length}")
    if report.guidance:
        console.print(f"guidance: {report.guidance['text']}; {report.guidance['verdict']}")
