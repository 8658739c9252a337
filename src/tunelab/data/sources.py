"""Every place tunelab reads a dataset from, behind one row iterator.

A source is what the user typed: a ``.jsonl`` file, a ``.json`` file (an array of rows), a
``.csv`` file, a ``.parquet`` file, a folder written by ``datasets``' ``save_to_disk``, or
``hf:ORG/NAME[:SPLIT]`` (a Hugging Face Hub dataset, loaded by ``datasets.load_dataset``).
Each row comes back with its position in the source's own terms, so a finding points where
the user looks:

- JSONL: the file's line (``data.jsonl:7``, as editors and compilers write it);
- CSV: the row, counting the header as row 1, as a spreadsheet numbers it (``data.csv row 7``;
  a quoted cell that spans several lines is still one row);
- JSON arrays, Parquet, ``datasets`` folders and Hub datasets: the 0-based index, as
  ``rows[7]`` / ``dataset[7]`` reaches it (``data.parquet index 7``).

Cells are taken as the source types them. CSV cells are text: a number stays the text it is
written as, an empty cell is a missing field, and the structured fields (``messages``,
``preferred_output``, ``non_preferred_output``, and ``input`` beside them) hold JSON text that
is parsed here. In typed sources (Parquet, ``datasets``) a null cell is a missing field and a
non-string value where text is expected is reported by the format checks like any JSON row.
``columns`` renames source columns onto tunelab's fields (``{"question": "instruction"}``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from tunelab.data.formats import FORMAT_KEYS
from tunelab.data.load import BadLine, Row, check_readable, iter_lines
from tunelab.errors import ConfigError, DataError

HUB_PREFIX = "hf:"
KINDS = ("jsonl", "json", "csv", "parquet", "datasets", "hub")
UNITS = {"jsonl": "line", "csv": "row", "json": "index", "parquet": "index", "datasets": "index", "hub": "index"}
FIELDS = frozenset().union(*FORMAT_KEYS.values())
# Fields whose CSV cells hold JSON (a list of messages, a list with one assistant message).
JSON_FIELDS = ("messages", "preferred_output", "non_preferred_output")


@dataclass(frozen=True)
class Source:
    spec: str  # as given: a path or hf:ORG/NAME[:SPLIT]
    kind: str  # one of KINDS
    columns: dict[str, str] = field(default_factory=dict)  # source column -> tunelab field

    @property
    def unit(self) -> str:
        return UNITS[self.kind]

    def where(self, position: int) -> str:
        """'data.jsonl:7', 'data.csv row 7', 'data.parquet index 7'."""
        return f"{self.spec}:{position}" if self.unit == "line" else f"{self.spec} {self.unit} {position}"


def kind_of(spec: str | Path) -> str:
    """The kind of source ``spec`` names, from its form alone (nothing is read)."""
    text = str(spec)
    if text.startswith(HUB_PREFIX):
        return "hub"
    path = Path(text)
    if path.is_dir():
        return "datasets"
    suffix = path.suffix.lower()
    # Any other suffix is read as JSONL, as before other sources existed (.txt, .ndjson, none).
    return {".json": "json", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}.get(suffix, "jsonl")


def where(spec: str | Path, position: int) -> str:
    """A row's position in words, for a message: see ``Source.where``."""
    return Source(str(spec), kind_of(spec)).where(position)


def open_source(spec: str | Path, columns: dict[str, str] | None = None) -> Source:
    return Source(str(spec), kind_of(spec), check_columns(columns))


def check_columns(columns: dict[str, str] | None) -> dict[str, str]:
    """The column mapping, each target one of tunelab's fields."""
    columns = dict(columns or {})
    for source, target in columns.items():
        if target not in FIELDS:
            raise ConfigError(f"data.columns: '{source}' maps onto '{target}', which is no tunelab field "
                              f"(valid: {', '.join(sorted(FIELDS))})")
    targets = list(columns.values())
    doubled = sorted({t for t in targets if targets.count(t) > 1})
    if doubled:
        raise ConfigError(f"data.columns: several columns map onto '{doubled[0]}'; map one")
    return columns


def parse_columns(text: str | None) -> dict[str, str]:
    """'question=instruction,answer=output' (the CLI's --columns) -> a mapping."""
    if not text:
        return {}
    pairs = [item.partition("=") for item in text.split(",") if item.strip()]
    if any(not a.strip() or not sep or not b.strip() for a, sep, b in pairs):
        raise ConfigError(f"--columns {text!r}: expected SOURCE=FIELD pairs, e.g. question=instruction,answer=output")
    return check_columns({a.strip(): b.strip() for a, _, b in pairs})


def iter_rows(spec: str | Path, columns: dict[str, str] | None = None) -> Iterator[Row | BadLine]:
    """Every row of the source as a Row (position, object with columns renamed) or a BadLine."""
    source = open_source(spec, columns)
    reader = {"jsonl": _jsonl_rows, "json": _json_rows, "csv": _csv_rows, "parquet": _parquet_rows,
              "datasets": _datasets_rows, "hub": _hub_rows}[source.kind]
    for item in reader(source):
        if isinstance(item, Row) and source.columns and isinstance(item.obj, dict):
            item = Row(item.line, _renamed(item.obj, source, item.line))
        yield item


def _renamed(obj: dict, source: Source, position: int) -> dict:
    out = {k: v for k, v in obj.items() if k not in source.columns}
    for column, target in source.columns.items():
        if column in obj:
            if target in out:
                raise DataError(f"{source.where(position)}: data.columns maps '{column}' onto '{target}', which "
                                "the source already has; rename or drop one of them")
            out[target] = obj[column]
    return out


# ---------------------------------------------------------------------------------- readers
def _jsonl_rows(source: Source) -> Iterator[Row | BadLine]:
    yield from iter_lines(source.spec)


def _json_rows(source: Source) -> Iterator[Row | BadLine]:
    """A JSON array of rows (read whole: JSON has no streaming form of an array). A ``.json``
    file that does not start with '[' is read as JSON Lines, which many tools name .json."""
    path = check_readable(source.spec)
    text = _text(path)
    if not text.lstrip().startswith("["):
        yield from iter_lines(path)
        return
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise DataError(f"{path}: invalid JSON: nested too deeply") from None
    if not rows:
        raise DataError(f"{path}: the array is empty, expected one object per row")
    for index, obj in enumerate(rows):
        yield Row(index, obj)


def _text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 at byte {exc.start}") from None


def _csv_rows(source: Source) -> Iterator[Row | BadLine]:
    path = check_readable(source.spec)
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long answers are normal; the default cap is 128 KiB
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader, None)
            _check_header(source, header)
            _check_mapped(source, header)
            for number, cells in enumerate(reader, start=2):  # the header is row 1
                row = _csv_row(number, header, cells)
                if row is not None:
                    yield row
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not valid UTF-8 ({exc.reason})") from None
        except csv.Error as exc:
            raise DataError(f"{path} row {reader.line_num}: {exc}") from None


def _check_header(source: Source, header: list[str] | None) -> None:
    if not header or not any(h.strip() for h in header):
        raise DataError(f"{source.spec}: no header row; the first row must name the columns")
    named = [h for h in header if h]
    if len(set(named)) != len(named):
        raise DataError(f"{source.spec} row 1: a column name appears twice")


def _csv_row(number: int, header: list[str], cells: list[str]) -> Row | BadLine | None:
    if not any(c.strip() for c in cells):
        return None  # spreadsheets export empty rows (",,,"): nothing to check or train on
    if len(cells) > len(header):
        return BadLine(number, "invalid_csv", f"{len(cells)} cells but the header names {len(header)} columns")
    obj: dict = {}
    for name, cell in zip(header, cells):
        if not name or cell == "":
            continue  # an empty cell is a missing field; an unnamed column is not data
        if name in JSON_FIELDS or (name == "input" and "preferred_output" in header):
            try:
                cell = json.loads(cell)
            except (json.JSONDecodeError, RecursionError) as exc:
                detail = getattr(exc, "msg", "nested too deeply")
                return BadLine(number, "invalid_json", f"field '{name}' holds invalid JSON: {detail}")
        obj[name] = cell
    return Row(number, obj)


def _check_mapped(source: Source, columns) -> None:
    missing = [c for c in source.columns if c not in columns]
    if missing:
        raise DataError(f"{source.spec}: data.columns names column '{missing[0]}', which is not in the source "
                        f"(columns: {', '.join(map(str, columns))})")


def _parquet_rows(source: Source) -> Iterator[Row | BadLine]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = check_readable(source.spec)
    try:
        table = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
    _check_mapped(source, table.schema_arrow.names)
    index = 0
    for batch in table.iter_batches(batch_size=1024):  # streamed: one batch in memory at a time
        for obj in batch.to_pylist():
            yield Row(index, _drop_nulls(obj))
            index += 1


def _drop_nulls(obj: dict) -> dict:
    """A typed source's row without its null cells: a column a row does not use is absent."""
    return {k: v for k, v in obj.items() if v is not None}


def _datasets_rows(source: Source) -> Iterator[Row | BadLine]:
    import datasets

    path = Path(source.spec)
    if not ((path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()):
        raise DataError(f"{path}: is a folder but not one written by datasets' save_to_disk "
                        "(no dataset_info.json); pass a data file or such a folder")
    try:
        loaded = datasets.load_from_disk(str(path))
    except (OSError, ValueError, datasets.exceptions.DatasetsError) as exc:
        raise DataError(f"{path}: cannot load the saved dataset ({str(exc).splitlines()[0]})") from None
    if isinstance(loaded, datasets.DatasetDict):
        splits = list(loaded)
        if "train" not in loaded:
            raise DataError(f"{path}: holds the splits {', '.join(splits)}; pass one split's folder, "
                            f"e.g. {path / splits[0]}")
        loaded = loaded["train"]
    yield from _dataset_rows(source, loaded)


def _dataset_rows(source: Source, ds) -> Iterator[Row]:
    _check_mapped(source, ds.column_names)
    for index, obj in enumerate(ds):
        yield Row(index, _drop_nulls(obj))


def hub_name(spec: str) -> tuple[str, str]:
    """'hf:ORG/NAME[:SPLIT]' -> (ORG/NAME, SPLIT or 'train')."""
    name, _, split = spec[len(HUB_PREFIX):].partition(":")
    if name.count("/") > 1 or not name.strip("/") or name.startswith("/"):
        raise ConfigError(f"{spec}: expected hf:ORG/NAME or hf:ORG/NAME:SPLIT, e.g. hf:tatsu-lab/alpaca:train")
    return name, split or "train"


def _hub_rows(source: Source) -> Iterator[Row]:
    import datasets

    name, split = hub_name(source.spec)
    hub_log = logging.getLogger("huggingface_hub")
    level = hub_log.level
    hub_log.setLevel(logging.ERROR)  # its per-retry warnings would bury the one line that says what failed
    try:
        ds = datasets.load_dataset(name, split=split)
    except (OSError, ValueError, datasets.exceptions.DatasetsError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{source.spec}: cannot load the dataset '{name}' (split '{split}') from the Hugging "
                        f"Face Hub: {reason}", hint="check the name and the network, or save it with "
                        "save_to_disk and pass the folder") from None
    finally:
        hub_log.setLevel(level)
    yield from _dataset_rows(source, ds)


# ---------------------------------------------------------------------------------- identity
def digest(spec: str | Path) -> str:
    """A sha256 that changes when the data does: a file's bytes, a folder's files (names and
    bytes, in name order), or a Hub dataset's rows as read."""
    h = hashlib.sha256()
    kind = kind_of(spec)
    if kind == "hub":
        for item in iter_rows(spec):
            h.update(json.dumps(item.obj, sort_keys=True, ensure_ascii=False, default=str).encode() + b"\n")
        return h.hexdigest()
    path = Path(spec)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            h.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()
