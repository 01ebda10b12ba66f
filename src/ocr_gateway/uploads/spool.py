"""Stream a multipart upload straight into `temp/`, enforcing the size cap as bytes arrive.

Starlette's form parsing reads the whole body before a route runs; this parser instead writes
the `file` part to disk in 1 MiB slices, sniffs its magic bytes from the first slice, and stops
the moment the cap is passed, so memory stays bounded and nothing oversized reaches the disk.
"""

from __future__ import annotations

import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from python_multipart.multipart import MultipartParser, parse_options_header

from ocr_gateway.core.errors import MalformedRequest, UnsupportedMediaType, UploadTooLarge
from ocr_gateway.uploads.media import SNIFF_BYTES, MediaType, sniff

FILE_FIELD = "file"
WRITE_SLICE = 1024 * 1024
# Room for multipart headers and small extra fields around the file itself.
ENVELOPE_BYTES = 64 * 1024
MAX_FILENAME_CHARS = 255


@dataclass(slots=True)
class SpooledUpload:
    path: Path
    filename: str
    media_type: MediaType
    size: int


def clean_filename(raw: str) -> str:
    """A client's filename as safe display text: no control characters, bounded length."""
    text = "".join(ch for ch in raw if unicodedata.category(ch)[0] != "C")
    text = text.strip() or "upload"
    return text[:MAX_FILENAME_CHARS]


@dataclass(slots=True)
class _Events:
    """What the sync parser callbacks saw during one `write`, for the async side to act on."""

    header_field: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    headers: dict[bytes, bytes] = field(default_factory=dict)
    items: list[tuple[str, bytes]] = field(default_factory=list)


async def spool_upload(
    body: AsyncIterator[bytes],
    content_type: str | None,
    content_length: str | None,
    destination: Path,
    *,
    max_bytes: int,
    accepted: frozenset[MediaType],
) -> SpooledUpload:
    """Write the `file` part of a multipart body to `destination`; raise a GatewayError if bad.

    On any error the partial file is removed before the error propagates.
    """
    if content_type is None:
        raise MalformedRequest("expected a multipart/form-data body with a 'file' field")
    mime, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if mime != b"multipart/form-data" or not boundary:
        raise MalformedRequest("expected a multipart/form-data body with a 'file' field")
    if (
        content_length is not None
        and content_length.isdigit()
        and int(content_length) > max_bytes + ENVELOPE_BYTES
    ):
        raise UploadTooLarge(f"upload exceeds the limit of {max_bytes} bytes")

    events = _Events()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        events.header_field += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        events.header_value += data[start:end]

    def on_header_end() -> None:
        events.headers[bytes(events.header_field).lower()] = bytes(events.header_value)
        events.header_field.clear()
        events.header_value.clear()

    def on_headers_finished() -> None:
        events.items.append(("part", events.headers.get(b"content-disposition", b"")))
        events.headers = {}

    def on_part_data(data: bytes, start: int, end: int) -> None:
        events.items.append(("data", data[start:end]))

    def on_part_end() -> None:
        events.items.append(("end", b""))

    parser = MultipartParser(
        boundary,
        {
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
        # A part's header line may carry a long client filename; it is cut to 255 characters
        # later, so refusing it here would only turn a harmless name into a failed upload.
        max_header_size=ENVELOPE_BYTES,
    )

    filename: str | None = None
    media_type: MediaType | None = None
    in_file_part = False
    file_done = False
    size = 0
    total = 0
    pending = bytearray()
    out: anyio.AsyncFile[bytes] | None = None

    async def flush(final: bool = False) -> None:
        nonlocal out, media_type
        if media_type is None:
            if len(pending) < SNIFF_BYTES and not final:
                return
            media_type = sniff(bytes(pending[:SNIFF_BYTES]))
            if media_type is None or media_type not in accepted:
                found = media_type.value if media_type else "unrecognised data"
                wanted = ", ".join(sorted(m.value for m in accepted))
                raise UnsupportedMediaType(
                    f"the file's content is {found}; this endpoint takes {wanted}"
                )
        if out is None:
            out = await anyio.open_file(destination, "wb")
        if pending:
            await out.write(bytes(pending))
            pending.clear()

    try:
        async for chunk in body:
            total += len(chunk)
            if total > max_bytes + ENVELOPE_BYTES:
                raise UploadTooLarge(f"upload exceeds the limit of {max_bytes} bytes")
            try:
                parser.write(chunk)
            except Exception as exc:  # python-multipart raises its own parse errors
                raise MalformedRequest(f"malformed multipart body: {exc}") from exc
            items, events.items = events.items, []
            for kind, data in items:
                if kind == "part":
                    _, disposition = parse_options_header(data)
                    name = disposition.get(b"name", b"").decode("latin-1")
                    in_file_part = name == FILE_FIELD and not file_done
                    if in_file_part:
                        raw = disposition.get(b"filename", b"")
                        filename = clean_filename(_decode_filename(raw))
                elif kind == "data" and in_file_part:
                    size += len(data)
                    if size > max_bytes:
                        raise UploadTooLarge(f"upload exceeds the limit of {max_bytes} bytes")
                    pending += data
                    if len(pending) >= WRITE_SLICE:
                        await flush()
                elif kind == "end" and in_file_part:
                    in_file_part = False
                    file_done = True
        try:
            parser.finalize()
        except Exception as exc:
            raise MalformedRequest(f"malformed multipart body: {exc}") from exc
        if not file_done:
            raise MalformedRequest("the multipart body has no complete 'file' field")
        if size == 0:
            raise MalformedRequest("the uploaded file is empty")
        await flush(final=True)
        assert media_type is not None and filename is not None
        return SpooledUpload(destination, filename, media_type, size)
    except BaseException:
        if out is not None:
            await out.aclose()
            out = None
        await anyio.Path(destination).unlink(missing_ok=True)
        raise
    finally:
        if out is not None:
            await out.aclose()


def _decode_filename(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")
