"""`tunelab export`: a run's adapter, one merged model folder, or one GGUF file; optionally
pushed to the Hugging Face Hub with a generated model card."""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer

from tunelab.cli.app import app
from tunelab.cli.render import console
from tunelab.errors import ConfigError


@app.command("export")
def export_cmd(
    run_dir: Path = typer.Argument(..., help="run directory written by `tunelab train`"),
    out: Path | None = typer.Option(None, "--out", help="folder to write (optional with --push-to-hub)"),
    merge: bool = typer.Option(False, "--merge", help="fold the adapter into the base: one plain transformers model"),
    fmt: str = typer.Option("hf", "--format",
                            help="hf: the adapter or (--merge) a transformers folder; gguf: one llama.cpp file "
                                 "(merged) and an Ollama Modelfile"),
    quant: str = typer.Option("f16", "--quant", help="GGUF weights: f16, or q8_0 (about half the size)"),
    push_to_hub: str | None = typer.Option(None, "--push-to-hub", metavar="ORG/NAME",
                                           help="upload the export with a model card to this Hub repo "
                                                "(token from the HF_TOKEN environment variable)"),
    private: bool = typer.Option(False, "--private", help="create the Hub repo private"),
    force: bool = typer.Option(False, "--force", help="replace a non-empty --out"),
) -> None:
    """Export a run: the adapter folder (default), a merged model (lora, dora, qlora, ia3, full),
    or a GGUF file for llama.cpp and Ollama; --push-to-hub uploads it with a model card."""
    from tunelab.inference import hub
    from tunelab.inference.export import export_run
    from tunelab.rundir import open_run

    if out is None and push_to_hub is None:
        raise ConfigError("--out: a folder to write is required (or --push-to-hub ORG/NAME to upload)")
    run = open_run(run_dir)
    if push_to_hub is not None:
        hub.check_repo_id(push_to_hub)
        token = hub.token()  # a missing token fails before the export's minutes of work
    with tempfile.TemporaryDirectory(prefix="tunelab-export-") as scratch:
        target = out if out is not None else Path(scratch) / run.name
        result = export_run(run, target, merge=merge, force=force, fmt=fmt, quant=quant)
        _print_export(result)
        if push_to_hub is not None:
            pushed = hub.push(run, target, push_to_hub, token=token, private=private, kind=result["kind"])
            console.print(f"pushed to [bold]{pushed['url']}[/bold] ({pushed['files']} files, commit {pushed['commit'][:8]})")


def _print_export(result: dict) -> None:
    console.print(f"wrote {result['kind']} of {result['method']} run to [bold]{result['out']}[/bold]")
    if result["kind"] == "merged model":
        console.print("loads with: AutoModelForCausalLM.from_pretrained(" + repr(result["out"]) + ")")
    if result["kind"] == "gguf":
        size = result["bytes"] / 2**20
        console.print(f"{result['gguf']}: {result['tensors']} tensors, {result['quant']}, {size:.1f} MiB; "
                      f"run with: cd {result['out']} && ollama create NAME -f Modelfile && ollama run NAME")
