"""The index: a folder holding the chunks, a BM25 index and, optionally, dense embeddings.

Layout (nothing in it is pickled; every array loads with ``allow_pickle=False``)::

    manifest.json     format, version, chunking settings, retrievers, documents, skipped files
    chunks.jsonl      one chunk a line: document number, character span, text
    bm25/             bm25s's own save: numpy arrays (.npy) and JSON vocabulary and parameters
    embeddings.npy    float32, one unit-length row per chunk (dense and hybrid indexes only)

The folder is written beside its destination and renamed into place, so a crash leaves either
the old index or the new one, never a mix.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tunelab.errors import ConfigError, DataError, one_of, require_extra
from tunelab.events import EventSink, no_events
from tunelab.rag.chunking import Chunk, check_settings, chunk_text
from tunelab.rag.documents import read_documents

FORMAT = "tunelab-rag-index"
VERSION = 1
RETRIEVERS = ("bm25", "dense", "hybrid")
BM25_SETTINGS = {"stemmer": "english", "stopwords": "en"}


@dataclass
class Index:
    path: Path
    manifest: dict
    chunks: list[Chunk]
    bm25: object  # bm25s.BM25
    embeddings: object | None  # numpy array (chunks x dims) or None

    @property
    def documents(self) -> list[str]:
        return [d["name"] for d in self.manifest["documents"]]

    @property
    def retriever(self) -> str:
        return self.manifest["retriever"]

    @property
    def embedder(self) -> str | None:
        return self.manifest.get("embedder")

    def source(self, chunk: Chunk) -> str:
        return self.manifest["documents"][chunk.doc]["name"]


def build_index(paths: list[str | Path], out: str | Path, *, retriever: str = "bm25", chunk_tokens: int = 200,
                overlap: int = 40, tokenizer: str | None = None, text_field: str = "text",
                embedder: str | None = None, events: EventSink = no_events) -> dict:
    """Index the documents under ``paths`` into the folder ``out`` and return the manifest.

    Chunks are ``chunk_tokens`` tokens of ``tokenizer`` (a model name or folder; default the
    bundled model) with ``overlap`` tokens shared between neighbours. ``retriever`` is the
    default search of the index: bm25, dense (embeddings of ``embedder``) or hybrid (both)."""
    from tunelab.models.catalog import DEFAULT_MODEL
    from tunelab.models.load import load_tokenizer, resolve
    from tunelab.rag.embed import DEFAULT_EMBEDDER

    if retriever not in RETRIEVERS:
        raise ConfigError(one_of("retriever", retriever, RETRIEVERS))
    check_settings(chunk_tokens, overlap)
    out = Path(out)
    refuse_foreign_folder(out)
    start = time.perf_counter()
    docs, skipped = read_documents(paths, text_field)
    if not docs:
        detail = "; ".join(f"{s.name}: {s.reason}" for s in skipped[:3])
        raise DataError(f"no readable documents to index{f' ({detail})' if detail else ''}")
    tokenizer = tokenizer or DEFAULT_MODEL
    tok = load_tokenizer(resolve(tokenizer))
    chunks = [c for i, d in enumerate(docs) for c in chunk_text(tok, d.text, i, chunk_tokens, overlap)]
    events({"event": "note", "text": f"{len(chunks)} chunks from {len(docs)} documents"})
    embedder = (embedder or DEFAULT_EMBEDDER) if retriever != "bm25" else None
    manifest = {
        "format": FORMAT, "version": VERSION, "retriever": retriever,
        "chunking": {"tokenizer": tokenizer, "chunk_tokens": chunk_tokens, "overlap": overlap},
        "bm25": BM25_SETTINGS, "embedder": embedder, "chunks": len(chunks),
        "documents": [{"name": d.name, "chars": len(d.text),
                       "chunks": sum(1 for c in chunks if c.doc == i)} for i, d in enumerate(docs)],
        "skipped": [asdict(s) for s in skipped],
    }
    with staging_folder(out) as tmp:
        write_chunks(tmp / "chunks.jsonl", chunks)
        write_bm25(tmp / "bm25", [c.text for c in chunks])
        if embedder:
            from tunelab.rag.embed import embed_documents

            events({"event": "note", "text": f"embedding {len(chunks)} chunks with {embedder}"})
            save_array(tmp / "embeddings.npy", embed_documents(embedder, [c.text for c in chunks]))
        manifest["seconds"] = round(time.perf_counter() - start, 2)
        write_synced(tmp / "manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest


def refuse_foreign_folder(out: Path) -> None:
    """Replacing an index is fine; replacing some other folder (or a file) is not."""
    if out.exists() and not (out / "manifest.json").is_file() and (out.is_file() or any(out.iterdir())):
        raise ConfigError(f"{out}: exists and is not a tunelab index; pass another --out")


class staging_folder:
    """A fresh folder beside ``out``; on success it replaces ``out`` by renames, on failure it
    is removed and ``out`` is untouched."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def __enter__(self) -> Path:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.", suffix=".tmp", dir=self.out.parent))
        self.tmp.chmod(0o755)  # mkdtemp's folder is private; an index is as readable as its documents
        return self.tmp

    def __exit__(self, exc_type, *_exc) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        sync_folder(self.tmp)
        old = None
        if self.out.exists():
            old = self.out.with_name(f".{self.out.name}.{os.getpid()}.old")
            os.replace(self.out, old)
        os.replace(self.tmp, self.out)
        sync_folder(self.out.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def sync_folder(folder: Path) -> None:
    """fsync every file under ``folder`` and the folders themselves, so the rename publishes
    data that is on disk."""
    for path in sorted(folder.rglob("*")) + [folder]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_synced(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def write_chunks(path: Path, chunks: list[Chunk]) -> None:
    write_synced(path, "".join(json.dumps([c.doc, c.start, c.end, c.text], ensure_ascii=False) + "\n"
                               for c in chunks))


def save_array(path: Path, array) -> None:
    import numpy as np

    np.save(path, array, allow_pickle=False)


def bm25_tokens(texts: list[str]) -> list[list[str]]:
    """Lower-cased words, English stop words dropped, Snowball-stemmed: the same for chunks
    and queries."""
    require_extra("rag", "BM25 retrieval", "bm25s", "Stemmer")
    import bm25s
    import Stemmer

    return bm25s.tokenize(texts, stopwords=BM25_SETTINGS["stopwords"], stemmer=Stemmer.Stemmer("english"),
                          return_ids=False, show_progress=False)


def write_bm25(folder: Path, texts: list[str]) -> None:
    require_extra("rag", "BM25 retrieval", "bm25s", "Stemmer")
    import bm25s

    retriever = bm25s.BM25()
    retriever.index(bm25_tokens(texts), show_progress=False)
    retriever.save(str(folder), allow_pickle=False, show_progress=False)


def load_index(path: str | Path) -> Index:
    """The index in folder ``path``; a folder that is not a complete index of this version is
    an error that says to rebuild it."""
    require_extra("rag", "BM25 retrieval", "bm25s")
    import bm25s
    import numpy as np

    path = Path(path)
    manifest = read_manifest(path)
    chunks = read_chunks(path / "chunks.jsonl")
    try:
        bm25 = bm25s.BM25.load(str(path / "bm25"), allow_pickle=False, show_progress=False)
        embeddings = (np.load(path / "embeddings.npy", allow_pickle=False)
                      if manifest.get("embedder") else None)
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: damaged index ({exc}); rebuild it with `tunelab rag index`") from None
    counts = {len(chunks), manifest["chunks"], bm25.scores["num_docs"]}
    if embeddings is not None:
        counts.add(embeddings.shape[0])
    if len(counts) != 1:
        raise DataError(f"{path}: damaged index (its parts hold {sorted(counts)} chunks); rebuild it with "
                        "`tunelab rag index`")
    return Index(path, manifest, chunks, bm25, embeddings)


def read_manifest(path: Path) -> dict:
    file = path / "manifest.json"
    if not file.is_file():
        raise DataError(f"{path}: not a tunelab index (no manifest.json); build one with `tunelab rag index`")
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{file}: not valid JSON ({exc}); rebuild the index with `tunelab rag index`") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DataError(f"{file}: not a tunelab index manifest")
    if manifest.get("version") != VERSION:
        raise DataError(f"{file}: index version {manifest.get('version')} (this tunelab reads {VERSION}); "
                        "rebuild it with `tunelab rag index`")
    return manifest


def read_chunks(file: Path) -> list[Chunk]:
    try:
        with open(file, encoding="utf-8") as fh:
            return [Chunk(*json.loads(line)) for line in fh]
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"{file}: unreadable chunks ({exc}); rebuild the index with `tunelab rag index`") from None
