"""`tunelab rag index`, `tunelab rag ask` and `tunelab compare-rag`: retrieval-augmented answers
from the user's documents, and RAG measured against fine-tuning on the user's test set."""

from __future__ import annotations

from pathlib import Path

import typer

from tunelab import api
from rich.table import Table

from tunelab.cli.app import app
from tunelab.cli.render import ProgressView, console, print_json
from tunelab.errors import ConfigError

rag_app = typer.Typer(help="Retrieval-augmented generation: index documents, answer from them.",
                      no_args_is_help=True)
app.add_typer(rag_app, name="rag")

RETRIEVER_HELP = "bm25 (words), dense (embeddings) or hybrid (both, fused by rank)"


@rag_app.command("index")
def index_cmd(
    docs: list[Path] = typer.Argument(..., help=".txt, .md or .jsonl files, or folders of them"),
    out: Path = typer.Option(..., "--out", help="index folder to write (an existing index there is replaced)"),
    retriever: str = typer.Option("bm25", "--retriever", help=f"default search: {RETRIEVER_HELP}; dense and "
                                                              "hybrid also store embeddings"),
    chunk_tokens: int = typer.Option(200, "--chunk-tokens", help="tokens per chunk"),
    overlap: int = typer.Option(40, "--overlap", help="tokens each chunk shares with the next"),
    tokenizer: str = typer.Option(None, "--tokenizer", help="model whose tokens chunks are counted in "
                                                            "(default: the bundled model)"),
    text_field: str = typer.Option("text", "--text-field", help="the field holding a .jsonl row's text"),
    embedder: str = typer.Option(None, "--embedder", help="embedding model for dense/hybrid: all-minilm-l6-v2 "
                                                          "(shipped by a package) or a local folder"),
    as_json: bool = typer.Option(False, "--json", help="print the index manifest as JSON"),
) -> None:
    """Chunk documents by tokens and index them for retrieval (BM25 by default)."""
    with ProgressView() as progress:
        manifest = api.rag_index(docs, out, retriever=retriever, chunk_tokens=chunk_tokens, overlap=overlap,
                               tokenizer=tokenizer, text_field=text_field, embedder=embedder, events=progress)
    if as_json:
        print_json(manifest)
        return
    for skipped in manifest["skipped"]:
        console.print(f"[yellow]skipped[/yellow] {skipped['name']}: {skipped['reason']}")
    console.print(f"indexed {manifest['chunks']} chunks from {len(manifest['documents'])} documents "
                  f"({manifest['chunking']['chunk_tokens']} tokens, overlap {manifest['chunking']['overlap']}, "
                  f"{manifest['retriever']}) in {manifest['seconds']} s: {out}")


@rag_app.command("ask")
def ask_cmd(
    index: Path = typer.Argument(..., help="index folder written by `tunelab rag index`"),
    model: str = typer.Option(None, "--model", help="a base model name, id or folder"),
    run: Path = typer.Option(None, "--run", help="a run directory written by `tunelab train`"),
    prompt: str = typer.Option(..., "--prompt", help="the question"),
    k: int = typer.Option(4, "--k", help="chunks to retrieve"),
    retriever: str = typer.Option(None, "--retriever", help=f"{RETRIEVER_HELP} (default: the index's)"),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", help="longest answer, in tokens"),
    as_json: bool = typer.Option(False, "--json", help="print the answer and its sources as JSON"),
) -> None:
    """Answer a question from the chunks retrieval finds, and show where the answer came from."""
    if (model is None) == (run is None):
        raise ConfigError("pass exactly one of --model and --run")
    result = api.rag_ask(index, run if run is not None else model, prompt, k=k, retriever=retriever,
                 max_new_tokens=max_new_tokens)
    if as_json:
        print_json(result)
        return
    console.print(result["answer"])
    console.rule(f"sources ({result['retriever']}, {result['prompt_tokens']} prompt tokens)")
    for src in result["sources"]:
        text = " ".join(src["text"].split())
        cut = ", cut to fit" if src["cut"] else ""
        # soft_wrap: a long path stays whole on its line instead of being folded or elided
        console.print(f"[{src['rank']}] {src['source']} (score {src['score']:.3f}{cut})", soft_wrap=True,
                      markup=False)
        console.print(f"    {text[:160]}{'…' if len(text) > 160 else ''}", soft_wrap=True, markup=False)
    if result["dropped"]:
        console.print(f"{result['dropped']} more retrieved chunks did not fit in the model's context")


@app.command("compare-rag")
def compare_rag_cmd(
    index: Path = typer.Option(..., "--index", help="index folder written by `tunelab rag index`"),
    run: Path = typer.Option(..., "--run", help="run directory written by `tunelab train`"),
    data: Path = typer.Option(..., "--data", help="test JSONL (same formats as training; a row's \"source\" "
                                                  "names the document holding its answer)"),
    limit: int = typer.Option(None, "--limit", help="compare on the first N rows only"),
    k: int = typer.Option(4, "--k", help="chunks to retrieve per question"),
    retriever: str = typer.Option(None, "--retriever", help=f"{RETRIEVER_HELP} (default: the index's)"),
    api_model: str = typer.Option("gpt-4o-mini", "--price-model", help="API model whose prices cost the answers "
                                                                       "(resources/prices.json)"),
    report: Path = typer.Option(None, "--report", help="Markdown report to write (default: "
                                                       "RUN/rag_compare.md; the JSON goes beside it)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of tables"),
) -> None:
    """Fine-tuning or RAG? Base, base+RAG, tuned and tuned+RAG answer the same rows; metrics,
    retrieval recall, latency, prompt tokens and cost per 1,000 answers, then a verdict."""
    with ProgressView() as progress:
        result = api.compare_rag(index, run, data, limit=limit, k=k, retriever=retriever, api_model=api_model,
                             report=report, events=progress)
    if as_json:
        print_json(result)
        return
    render_compare(result)


def render_compare(result: dict) -> None:
    from tunelab.rag.verdict import COLUMNS, table_rows

    table = Table(title=f"Fine-tuning or RAG? {result['n']} rows ({result['retriever']}, top {result['k']})")
    table.add_column("system")
    for _, label, _ in COLUMNS:
        table.add_column(label, justify="right")
    for row in table_rows(result):
        table.add_row(*row)
    console.print(table)
    if result["retrieval"]:
        key = next(k for k in result["retrieval"] if k.startswith("recall"))
        console.print(f"retrieval {key}: {result['retrieval'][key]:.3f} over {result['retrieval']['rows']} rows "
                      "that name their source")
    for line in result["verdict"]:
        console.print(f"• {line}")
    console.print(f"report: {result['report']}")
