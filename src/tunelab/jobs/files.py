"""Uploaded files: a multipart body streamed to disk under a generated id, the size cap enforced
on the bytes as they arrive, and the same format checks as ``tunelab data check``.

The multipart body is parsed with python-multipart's streaming parser (what Starlette's own
form parsing uses) rather than ``request.form()``, because the form API spools the whole file
before the route sees it: the cap could only be checked after the disk had taken it all.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tunelab.serve.edge import ApiError

DEFAULT_MAX_UPLOAD = 512 * 2**20  # bytes of one uploaded file (tunelab serve --max-upload-bytes)
MAX_FIELD_BYTES = 4096  # a form field other than the file (purpose)
PURPOSES = ("fine-tune",)
CHUNK_FLUSH = 1 << 20


@dataclass
class Upload:
    fields: dict[str, str] = field(default_factory=dict)
    path: Path | None = None
    filename: str | None = None
    size: int = 0


class _Parts:
    """python-multipart callbacks: the ``file`` part into ``folder``/.upload-*.part, other parts
    as small text fields; ApiError 413 as soon as the file passes ``cap``."""

    def __init__(self, folder: Path, cap: int) -> None:
        self.folder, self.cap, self.upload = folder, cap, Upload()
        self.headers: dict[bytes, bytes] = {}
        self.header_field = self.header_value = b""
        self.name: str | None = None
        self.value = bytearray()
        self.out = None

    def callbacks(self) -> dict:
        return {"on_part_begin": self.part_begin, "on_header_field": self.on_field, "on_header_value": self.on_value,
                "on_header_end": self.header_end, "on_headers_finished": self.headers_done,
                "on_part_data": self.data, "on_part_end": self.part_end}

    def part_begin(self) -> None:
        self.headers, self.name, self.value = {}, None, bytearray()

    def on_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def on_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def header_end(self) -> None:
        self.headers[self.header_field.lower()] = self.header_value
        self.header_field = self.header_value = b""

    def headers_done(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, options = parse_options_header(self.headers.get(b"content-disposition", b""))
        self.name = options.get(b"name", b"").decode("utf-8", "replace")
        if self.name == "file" and self.out is None:
            filename = options.get(b"filename", b"upload.jsonl").decode("utf-8", "replace")
            self.upload.filename = Path(filename.replace("\\", "/")).name[:255] or "upload.jsonl"  # a name, never a path
            self.upload.path = self.folder / f".upload-{uuid.uuid4().hex}.part"
            self.out = open(self.upload.path, "wb")

    def data(self, data: bytes, start: int, end: int) -> None:
        if self.name == "file" and self.out is not None and not self.out.closed:
            self.upload.size += end - start
            if self.upload.size > self.cap:
                raise ApiError(413, f"file: over the server's upload limit of {self.cap} bytes", param="file",
                               code="file_too_large")
            self.out.write(data[start:end])
        elif self.name != "file":
            self.value += data[start:end]
            if len(self.value) > MAX_FIELD_BYTES:
                raise ApiError(400, f"{self.name}: longer than {MAX_FIELD_BYTES} bytes", param=self.name)

    def part_end(self) -> None:
        if self.name == "file" and self.out is not None and not self.out.closed:
            self.out.flush()
            os.fsync(self.out.fileno())
            self.out.close()
        elif self.name:
            self.upload.fields[self.name] = self.value.decode("utf-8", "replace")

    def discard(self) -> None:
        if self.out is not None:
            self.out.close()
        if self.upload.path is not None:
            self.upload.path.unlink(missing_ok=True)


async def receive_upload(request, folder: Path, cap: int) -> Upload:
    """Stream a ``multipart/form-data`` body: the ``file`` part to a temporary file in
    ``folder`` (removed again if anything fails), the other parts as fields."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    kind, options = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data" or b"boundary" not in options:
        raise ApiError(400, "send the file as multipart/form-data (fields: file, purpose)", param="file")
    folder.mkdir(parents=True, exist_ok=True)
    parts = _Parts(folder, cap)
    parser = MultipartParser(options[b"boundary"], parts.callbacks())
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except ApiError:
        parts.discard()
        raise
    except Exception as exc:  # a malformed body, or the client went away: nothing of it is kept
        parts.discard()
        if getattr(exc, "status_code", None) == 413:  # the edge's own body limit
            raise
        raise ApiError(400, f"the multipart body could not be read ({type(exc).__name__})", param="file") from None
    if parts.upload.path is None or (parts.out is not None and not parts.out.closed):
        parts.discard()
        raise ApiError(400, "no 'file' part in the form", param="file", code="missing_required_parameter")
    return parts.upload


def store_upload(upload: Upload, folder: Path, tenant: str) -> dict:
    """Move a received upload to its final name (files/<id>.jsonl) and check its rows; the
    file's row for the store, with its format and its first error (None when valid)."""
    file_id = f"file-{uuid.uuid4().hex[:24]}"
    final = folder / f"{file_id}.jsonl"
    os.replace(upload.path, final)
    fmt, rows, error = check_file(final)
    return {"id": file_id, "tenant": tenant, "filename": upload.filename, "purpose": upload.fields.get("purpose"),
            "bytes": upload.size, "created_at": int(time.time()), "path": str(final), "format": fmt, "rows": rows,
            "error": error}


def check_file(path: Path) -> tuple[str | None, int, str | None]:
    """(format, rows, first error) with ``tunelab data check``'s format checks; the error names
    its line and field."""
    from tunelab.data.validate import parse_file

    parsed = parse_file(path)
    report = parsed.report
    if report.errors:
        first = min(report.errors, key=lambda f: f.line)
        more = len(report.errors) - 1
        return report.format, report.rows, (f"line {first.line}: {first.message} ({first.kind})"
                                            + (f"; {more} more error(s): run `tunelab data check` on it" if more else ""))
    if report.rows == 0:
        return None, 0, "the file has no rows"
    return report.format, report.rows, None


def file_object(row: dict) -> dict:
    """OpenAI's file object."""
    return {"id": row["id"], "object": "file", "bytes": row["bytes"], "created_at": row["created_at"],
            "filename": row["filename"], "purpose": row["purpose"], "status": "processed", "status_details": None,
            "expires_at": None}
