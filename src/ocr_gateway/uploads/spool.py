"""Stream a multipart upload straight into `temp/`, enforcing the size cap as bytes arrive.

Starlette's form parsing reads the whole body before a route runs; this parser instead writes
the `file` part to disk in 1 MiB slices, sniffs its magic bytes from the first slice, and stops
the moment the cap is passed, so memory stays bounded and nothing oversized reaches the disk.

`spool_upload` wires small pieces that each can be tested alone: `parse_boundary` reads the
Content-Type, `SizeLimits` holds every byte limit, `MultipartEvents` turns the push parser's
callbacks into events, `FileField` picks the `file` part out of them, and `FileSink` types and
writes its bytes.

`TextFields` collects the small text parts beside the file (`callback_url`, `callback_events`).

`spool_files` does the same for a batch: `FileFields` numbers every `files` part (refusing
the one past `max_files` as soon as its headers end), and each file streams through a
`FileSink` of its own to its own temp file, held to the same per-file cap. A refusal that is
about one file carries its `index`; on any error every file of the batch is removed.

The module is longer than the others (about 530 lines) on purpose: both spoolers are built from
the same parser pieces, and each piece is small and tested alone (tests/unit/test_spool*.py).
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
from python_multipart.multipart import MultipartParser, parse_options_header

from ocr_gateway.core.errors import (
    GatewayError,
    MalformedRequest,
    TooManyFiles,
    UnsupportedMediaType,
    UploadTooLarge,
)
from ocr_gateway.uploads.media import SNIFF_BYTES, MediaType, sniff

FILE_FIELD = "file"
FILES_FIELD = "files"
WRITE_SLICE = 1024 * 1024
# Room for multipart headers and small extra fields around the file itself.
ENVELOPE_BYTES = 64 * 1024
MAX_FILENAME_CHARS = 255


@dataclass(slots=True)
class SpooledUpload:
    """A file written to `temp/`; `sha256` is its digest, computed as its bytes streamed in
    (uploads/dedup.py builds an upload's dedup key from it)."""

    path: Path
    filename: str
    media_type: MediaType
    size: int
    sha256: bytes = b""


def clean_filename(raw: str) -> str:
    """A client's filename as safe display text: no control characters, bounded length."""
    text = "".join(ch for ch in raw if unicodedata.category(ch)[0] != "C")
    text = text.strip() or "upload"
    return text[:MAX_FILENAME_CHARS]


@dataclass(slots=True)
class SizeLimits:
    """Every byte limit of one upload, counted as the bytes arrive.

    Each file part may not exceed `max_bytes`; the body may hold `max_files` of them, each with
    `ENVELOPE_BYTES` of room (multipart headers and small extra fields). `file_bytes` counts
    the current file; `start_file` begins the count of the next one.
    """

    max_bytes: int
    body_bytes: int = 0
    file_bytes: int = 0
    max_files: int = 1

    @property
    def max_body_bytes(self) -> int:
        return self.max_files * (self.max_bytes + ENVELOPE_BYTES)

    def check_declared(self, content_length: str | None) -> None:
        """Refuse a body whose Content-Length is already over the cap, before reading it."""
        if (
            content_length is not None
            and content_length.isdigit()
            and int(content_length) > self.max_body_bytes
        ):
            raise self._too_large()

    def count_body(self, size: int) -> None:
        self.body_bytes += size
        if self.body_bytes > self.max_body_bytes:
            raise self._too_large()

    def start_file(self) -> None:
        self.file_bytes = 0

    def count_file(self, size: int) -> None:
        self.file_bytes += size
        if self.file_bytes > self.max_bytes:
            raise self._too_large()

    def _too_large(self) -> UploadTooLarge:
        return UploadTooLarge(f"upload exceeds the limit of {self.max_bytes} bytes")


def parse_boundary(content_type: str | None, field: str = FILE_FIELD) -> bytes:
    """The multipart boundary of a `multipart/form-data` Content-Type; else MalformedRequest
    naming the `field` the endpoint expects."""
    if content_type is None:
        raise MalformedRequest(f"expected a multipart/form-data body with a '{field}' field")
    mime, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if mime != b"multipart/form-data" or not boundary:
        raise MalformedRequest(f"expected a multipart/form-data body with a '{field}' field")
    return boundary


@dataclass(frozen=True, slots=True)
class PartStarted:
    """A part's headers are complete; `disposition` is its raw Content-Disposition value."""

    disposition: bytes


@dataclass(frozen=True, slots=True)
class PartData:
    data: bytes


@dataclass(frozen=True, slots=True)
class PartEnded:
    pass


PartEvent = PartStarted | PartData | PartEnded


class MultipartEvents:
    """python-multipart's push parser, its callbacks turned into events returned per chunk.

    The callbacks run synchronously inside `write`; the async caller acts on the events after.
    Any parse error becomes MalformedRequest.
    """

    def __init__(self, boundary: bytes) -> None:
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._events: list[PartEvent] = []
        self._parser = MultipartParser(
            boundary,
            {
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
            },
            # A part's header line may carry a long client filename; it is cut to 255
            # characters later, so refusing it here would only turn a harmless name into a
            # failed upload.
            max_header_size=ENVELOPE_BYTES,
        )

    def feed(self, chunk: bytes) -> list[PartEvent]:
        try:
            self._parser.write(chunk)
        except Exception as exc:  # python-multipart raises its own parse errors
            raise MalformedRequest(f"malformed multipart body: {exc}") from exc
        events, self._events = self._events, []
        return events

    def finish(self) -> None:
        """Check that the body ended where a multipart body may end."""
        try:
            self._parser.finalize()
        except Exception as exc:
            raise MalformedRequest(f"malformed multipart body: {exc}") from exc

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        self._headers[bytes(self._header_field).lower()] = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def _on_headers_finished(self) -> None:
        self._events.append(PartStarted(self._headers.get(b"content-disposition", b"")))
        self._headers = {}

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._events.append(PartData(data[start:end]))

    def _on_part_end(self) -> None:
        self._events.append(PartEnded())


class FileField:
    """Picks the upload out of the parts: the first part named `file`; later ones are ignored."""

    def __init__(self) -> None:
        self.filename: str | None = None
        self.complete = False
        self._inside = False

    def accept(self, event: PartEvent) -> bytes | None:
        """Follow one event; return its bytes if they belong to the file."""
        if isinstance(event, PartStarted):
            name, filename = _part_names(event.disposition)
            self._inside = name == FILE_FIELD and not self.complete
            if self._inside:
                self.filename = filename
        elif isinstance(event, PartData):
            if self._inside:
                return event.data
        elif self._inside:
            self._inside = False
            self.complete = True
        return None


# A text field (a callback URL, an option) is small; a longer one is refused, not truncated.
MAX_TEXT_FIELD_BYTES = 4096


class TextFields:
    """Collects the small text parts named in `names` (e.g. `callback_url`), wherever they
    come in the body; the first of each name counts. Parts with other names are ignored."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names
        self.values: dict[str, str] = {}
        self._current: str | None = None
        self._buffer = bytearray()

    def accept(self, event: PartEvent) -> None:
        if isinstance(event, PartStarted):
            name, _ = _part_names(event.disposition)
            self._current = name if name in self.names and name not in self.values else None
            self._buffer.clear()
        elif self._current is None:
            return
        elif isinstance(event, PartData):
            self._buffer += event.data
            if len(self._buffer) > MAX_TEXT_FIELD_BYTES:
                raise MalformedRequest(
                    f"the '{self._current}' field is over {MAX_TEXT_FIELD_BYTES} bytes"
                )
        else:
            try:
                self.values[self._current] = self._buffer.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise MalformedRequest(f"the '{self._current}' field is not UTF-8") from exc
            self._current = None


@dataclass(frozen=True, slots=True)
class FileOpened:
    """The headers of file `index` are complete."""

    index: int
    filename: str


@dataclass(frozen=True, slots=True)
class FileBytes:
    index: int
    data: bytes


@dataclass(frozen=True, slots=True)
class FileClosed:
    index: int


FileStep = FileOpened | FileBytes | FileClosed


class FileFields:
    """Picks every part named `name` out of the parts, numbering them from 0 in body order.

    Other parts are ignored. The part past `max_files` is refused (TooManyFiles, with its
    `index`) the moment its headers end, before any of its bytes are read.
    """

    def __init__(self, name: str, max_files: int) -> None:
        self.name = name
        self.max_files = max_files
        self.count = 0
        self._current: int | None = None

    def accept(self, event: PartEvent) -> FileStep | None:
        """Follow one event; return what it means for the files, if anything."""
        if isinstance(event, PartStarted):
            name, filename = _part_names(event.disposition)
            if name != self.name:
                return None
            index = self.count
            if index >= self.max_files:
                raise TooManyFiles(
                    f"a batch takes at most {self.max_files} files (MAX_FILES_PER_REQUEST)"
                ).add_fields(index=index)
            self.count += 1
            self._current = index
            return FileOpened(index, filename)
        if self._current is None:
            return None
        if isinstance(event, PartData):
            return FileBytes(self._current, event.data)
        index, self._current = self._current, None
        return FileClosed(index)


class FileSink:
    """The file on its way to `destination`: typed by its first bytes, written in slices,
    hashed (SHA-256) as they pass.

    Nothing is written before the type is known and accepted, so a refused type leaves no file.
    """

    def __init__(self, destination: Path, accepted: frozenset[MediaType]) -> None:
        self.destination = destination
        self.accepted = accepted
        self.media_type: MediaType | None = None
        self._pending = bytearray()
        self._out: anyio.AsyncFile[bytes] | None = None
        self._digest = hashlib.sha256()

    @property
    def sha256(self) -> bytes:
        """The digest of every byte written so far (all of the file, after `finish`)."""
        return self._digest.digest()

    async def write(self, data: bytes) -> None:
        self._digest.update(data)
        self._pending += data
        if len(self._pending) >= WRITE_SLICE:
            await self._flush(final=False)

    async def finish(self) -> MediaType:
        """Write what is left (typing a file shorter than the sniff window) and return its type."""
        await self._flush(final=True)
        assert self.media_type is not None
        return self.media_type

    async def close(self) -> None:
        if self._out is not None:
            await self._out.aclose()
            self._out = None

    async def discard(self) -> None:
        """Close and remove the partial file, if any was started."""
        await self.close()
        await anyio.Path(self.destination).unlink(missing_ok=True)

    async def _flush(self, *, final: bool) -> None:
        if self.media_type is None:
            if len(self._pending) < SNIFF_BYTES and not final:
                return
            self.media_type = self._sniff()
        if self._out is None:
            self._out = await anyio.open_file(self.destination, "wb")
        if self._pending:
            await self._out.write(bytes(self._pending))
            self._pending.clear()

    def _sniff(self) -> MediaType:
        media_type = sniff(bytes(self._pending[:SNIFF_BYTES]))
        if media_type is None or media_type not in self.accepted:
            found = media_type.value if media_type else "unrecognised data"
            wanted = ", ".join(sorted(m.value for m in self.accepted))
            raise UnsupportedMediaType(
                f"the file's content is {found}; this endpoint takes {wanted}"
            )
        return media_type


async def spool_upload(
    body: AsyncIterator[bytes],
    content_type: str | None,
    content_length: str | None,
    destination: Path,
    *,
    max_bytes: int,
    accepted: frozenset[MediaType],
    texts: TextFields | None = None,
) -> SpooledUpload:
    """Write the `file` part of a multipart body to `destination`; raise a GatewayError if bad.
    The text parts that `texts` asks for are collected into it.

    On any error the partial file is removed before the error propagates.
    """
    boundary = parse_boundary(content_type)
    limits = SizeLimits(max_bytes)
    limits.check_declared(content_length)
    sink = FileSink(destination, accepted)
    try:
        filename = await _receive(
            body, MultipartEvents(boundary), sink, limits, texts or TextFields(frozenset())
        )
        media_type = await sink.finish()
        return SpooledUpload(destination, filename, media_type, limits.file_bytes, sink.sha256)
    except BaseException:
        await sink.discard()
        raise
    finally:
        await sink.close()


async def _receive(
    body: AsyncIterator[bytes],
    parts: MultipartEvents,
    sink: FileSink,
    limits: SizeLimits,
    texts: TextFields,
) -> str:
    """Parse the whole body, passing the file's bytes to `sink`; return the file's name."""
    field = FileField()
    async for chunk in body:
        limits.count_body(len(chunk))
        for event in parts.feed(chunk):
            texts.accept(event)
            data = field.accept(event)
            if data is not None:
                limits.count_file(len(data))
                await sink.write(data)
    parts.finish()
    if not field.complete:
        raise MalformedRequest("the multipart body has no complete 'file' field")
    if limits.file_bytes == 0:
        raise MalformedRequest("the uploaded file is empty")
    assert field.filename is not None
    return field.filename


async def spool_files(
    body: AsyncIterator[bytes],
    content_type: str | None,
    content_length: str | None,
    destination: Callable[[int], Path],
    *,
    max_bytes: int,
    max_files: int,
    accepted: frozenset[MediaType],
    texts: TextFields | None = None,
) -> list[SpooledUpload]:
    """Write every `files` part of a multipart body to `destination(index)`, in body order.

    Each file is sniffed and held to `max_bytes` as it streams; the body to `max_files` files.
    A refusal about one file carries its `index` (GatewayError.fields). On any error every
    file of the batch, finished or partial, is removed before the error propagates.
    """
    boundary = parse_boundary(content_type, FILES_FIELD)
    limits = SizeLimits(max_bytes, max_files=max_files)
    limits.check_declared(content_length)
    batch = _BatchSinks(destination, accepted, limits, texts or TextFields(frozenset()))
    try:
        await batch.receive(body, MultipartEvents(boundary), FileFields(FILES_FIELD, max_files))
        return batch.spooled
    except BaseException:
        await batch.discard()
        raise


class _BatchSinks:
    """The files of one batch: the finished ones, and a `FileSink` for the one arriving."""

    def __init__(
        self,
        destination: Callable[[int], Path],
        accepted: frozenset[MediaType],
        limits: SizeLimits,
        texts: TextFields,
    ) -> None:
        self.destination = destination
        self.accepted = accepted
        self.limits = limits
        self.texts = texts
        self.spooled: list[SpooledUpload] = []
        self._sink: FileSink | None = None
        self._filename = ""

    async def receive(
        self, body: AsyncIterator[bytes], parts: MultipartEvents, fields: FileFields
    ) -> None:
        async for chunk in body:
            self.limits.count_body(len(chunk))
            for event in parts.feed(chunk):
                self.texts.accept(event)
                step = fields.accept(event)
                if step is None:
                    continue
                try:
                    await self._take(step)
                except GatewayError as exc:
                    exc.add_fields(index=step.index)
                    raise
        parts.finish()
        if self._sink is not None:  # python-multipart's finalize lets a cut-off part pass
            raise MalformedRequest("the multipart body ended inside a file").add_fields(
                index=len(self.spooled)
            )
        if not self.spooled:
            raise MalformedRequest(f"the multipart body has no complete '{FILES_FIELD}' field")

    async def _take(self, step: FileStep) -> None:
        if isinstance(step, FileOpened):
            self.limits.start_file()
            self._sink = FileSink(self.destination(step.index), self.accepted)
            self._filename = step.filename
            return
        assert self._sink is not None
        if isinstance(step, FileBytes):
            self.limits.count_file(len(step.data))
            await self._sink.write(step.data)
            return
        if self.limits.file_bytes == 0:
            raise MalformedRequest("the uploaded file is empty")
        sink = self._sink
        media_type = await sink.finish()
        await sink.close()
        self.spooled.append(
            SpooledUpload(
                sink.destination, self._filename, media_type, self.limits.file_bytes, sink.sha256
            )
        )
        self._sink = None

    async def discard(self) -> None:
        """Remove the file arriving and every finished one."""
        if self._sink is not None:
            await self._sink.discard()
        for upload in self.spooled:
            await anyio.Path(upload.path).unlink(missing_ok=True)


def _part_names(disposition: bytes) -> tuple[str, str]:
    """A part's field name and its cleaned filename, from its raw Content-Disposition."""
    _, params = parse_options_header(disposition)
    name = params.get(b"name", b"").decode("latin-1")
    return name, clean_filename(_decode_filename(params.get(b"filename", b"")))


def _decode_filename(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")
