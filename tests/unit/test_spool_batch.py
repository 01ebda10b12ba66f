"""Streaming a batch (several `files` parts) to one temp file each: numbering the parts, the
per-file cap, the file count refused while streaming, the `index` of a refused file, and no
file of the batch left behind on any error. Pure asyncio and files."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from ocr_gateway.core.errors import (
    GatewayError,
    MalformedRequest,
    TooManyFiles,
    UnsupportedMediaType,
    UploadTooLarge,
)
from ocr_gateway.uploads.media import IMAGE_TYPES, PDF_TYPES, MediaType
from ocr_gateway.uploads.spool import (
    ENVELOPE_BYTES,
    FileBytes,
    FileClosed,
    FileFields,
    FileOpened,
    FileStep,
    MultipartEvents,
    SizeLimits,
    SpooledUpload,
    parse_boundary,
    spool_files,
)
from tests.unit.test_spool import (
    BOUNDARY,
    CHUNKINGS,
    CONTENT_TYPE,
    PNG_HEAD,
    MiB,
    assert_nothing_left,
    feed,
    multipart,
    never_read,
    part,
    pdf_bytes,
)

BATCH_TYPES = PDF_TYPES | IMAGE_TYPES


def png_bytes(size: int) -> bytes:
    return (PNG_HEAD + bytes(range(256)) * (size // 256 + 1))[:size]


async def spool(
    body: AsyncIterator[bytes],
    folder: Path,
    *,
    max_bytes: int = 4 * MiB,
    max_files: int = 8,
    accepted: frozenset[MediaType] = BATCH_TYPES,
    content_type: str | None = CONTENT_TYPE,
    content_length: str | None = None,
) -> list[SpooledUpload]:
    return await spool_files(
        body,
        content_type,
        content_length,
        lambda index: folder / f"{index}.part",
        max_bytes=max_bytes,
        max_files=max_files,
        accepted=accepted,
    )


async def refusal(body: AsyncIterator[bytes], folder: Path, **options: int) -> GatewayError:
    """The GatewayError that spooling `body` raises; the batch must leave no file behind."""
    with pytest.raises(GatewayError) as caught:
        await spool(body, folder, **options)  # type: ignore[arg-type]
    assert_nothing_left(folder)
    return caught.value


def steps(body: bytes, fields: FileFields) -> list[FileStep]:
    """Every step `fields` reports for `body`, with consecutive bytes of one file joined."""
    events = MultipartEvents(parse_boundary(CONTENT_TYPE, "files"))
    found: list[FileStep] = []
    for event in events.feed(body):
        step = fields.accept(event)
        last = found[-1] if found else None
        if isinstance(step, FileBytes) and isinstance(last, FileBytes):
            found[-1] = FileBytes(step.index, last.data + step.data)
        elif step is not None:
            found.append(step)
    events.finish()
    return found


# ---------------------------------------------------------------- the pure pieces


def test_file_fields_number_the_files_and_skip_other_parts() -> None:
    body = multipart(
        part("files", b"first", b"a.pdf"),
        part("note", b"ignored"),
        part("file", b"also ignored", b"single.pdf"),
        part("files", b"second", b"b\x07.png"),
    )
    assert steps(body, FileFields("files", 8)) == [
        FileOpened(0, "a.pdf"),
        FileBytes(0, b"first"),
        FileClosed(0),
        FileOpened(1, "b.png"),
        FileBytes(1, b"second"),
        FileClosed(1),
    ]


def test_file_fields_refuse_the_file_past_the_limit_at_its_headers() -> None:
    fields = FileFields("files", 2)
    events = MultipartEvents(parse_boundary(CONTENT_TYPE, "files"))
    head = b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="files"\r\n\r\n'
    body = multipart(part("files", b"1"), part("files", b"2"))[: -len(BOUNDARY) - 6]
    for event in events.feed(body):
        fields.accept(event)
    assert fields.count == 2
    with pytest.raises(TooManyFiles) as caught:
        for event in events.feed(head):
            fields.accept(event)
    assert caught.value.fields == {"index": 2}
    assert caught.value.status_code == 413


def test_size_limits_of_a_batch_give_each_file_its_cap() -> None:
    limits = SizeLimits(1000, max_files=3)
    assert limits.max_body_bytes == 3 * (1000 + ENVELOPE_BYTES)
    limits.check_declared(str(3 * (1000 + ENVELOPE_BYTES)))
    with pytest.raises(UploadTooLarge):
        limits.check_declared(str(3 * (1000 + ENVELOPE_BYTES) + 1))
    for _ in range(3):
        limits.start_file()
        limits.count_file(1000)
    with pytest.raises(UploadTooLarge):
        limits.count_file(1)


def test_parse_boundary_names_the_field_the_endpoint_expects() -> None:
    with pytest.raises(MalformedRequest, match="'files'"):
        parse_boundary("application/json", "files")


def test_extra_fields_cannot_replace_error_or_detail() -> None:
    error = MalformedRequest("bad").add_fields(index=3)
    assert error.fields == {"index": 3}
    with pytest.raises(ValueError, match="detail"):
        error.add_fields(detail="other")


# ---------------------------------------------------------------- accepted batches


@pytest.mark.parametrize("chunking", CHUNKINGS)
async def test_each_file_is_written_whole_in_the_order_sent(tmp_path: Path, chunking: str) -> None:
    contents = [pdf_bytes(3000, seed=1), png_bytes(1500), pdf_bytes(70_000, seed=2)]
    body = multipart(
        part("files", contents[0], b"one.pdf", b"application/pdf"),
        part("comment", b"a field between the files"),
        part("files", contents[1], b"two.png", b"image/png"),
        part("files", contents[2], b"three.pdf"),
    )
    sizes = CHUNKINGS[chunking] if chunking != "bytes" else [97]
    spooled = await spool(feed(body, sizes), tmp_path)
    assert [u.filename for u in spooled] == ["one.pdf", "two.png", "three.pdf"]
    assert [u.media_type for u in spooled] == [MediaType.PDF, MediaType.PNG, MediaType.PDF]
    assert [u.path for u in spooled] == [tmp_path / f"{i}.part" for i in range(3)]
    assert [u.path.read_bytes() for u in spooled] == contents
    assert [u.size for u in spooled] == [len(c) for c in contents]


async def test_every_file_may_reach_the_cap(tmp_path: Path) -> None:
    max_bytes = MiB + 7
    body = multipart(*(part("files", pdf_bytes(max_bytes, seed=s)) for s in range(3)))
    spooled = await spool(feed(body, [64 * 1024]), tmp_path, max_bytes=max_bytes)
    assert [u.size for u in spooled] == [max_bytes] * 3


async def test_exactly_max_files_are_accepted(tmp_path: Path) -> None:
    body = multipart(*(part("files", pdf_bytes(2000, seed=s)) for s in range(4)))
    spooled = await spool(feed(body, [1000]), tmp_path, max_files=4)
    assert len(spooled) == 4


# ---------------------------------------------------------------- refusals


async def test_a_file_over_the_cap_is_413_naming_it_and_nothing_is_kept(tmp_path: Path) -> None:
    max_bytes = MiB
    body = multipart(
        part("files", pdf_bytes(max_bytes)),
        part("files", pdf_bytes(max_bytes + 1)),
        part("files", pdf_bytes(1000)),
    )
    error = await refusal(feed(body, [64 * 1024]), tmp_path, max_bytes=max_bytes)
    assert isinstance(error, UploadTooLarge)
    assert error.fields == {"index": 1}


async def test_the_wrong_type_is_415_naming_the_file(tmp_path: Path) -> None:
    body = multipart(
        part("files", pdf_bytes(5000)),
        part("files", png_bytes(5000)),
        part("files", b"plain text, neither PDF nor image\n" * 100, b"notes.pdf"),
    )
    error = await refusal(feed(body, [700]), tmp_path)
    assert isinstance(error, UnsupportedMediaType)
    assert error.fields == {"index": 2}


async def test_too_many_files_are_refused_while_streaming(tmp_path: Path) -> None:
    """The part past the limit is refused at its headers: the rest of the body is not read."""
    read = 0
    files = multipart(*(part("files", pdf_bytes(2000, seed=s)) for s in range(3)))
    files = files[: -len(BOUNDARY) - 6]  # drop the closing boundary

    async def endless_batch() -> AsyncIterator[bytes]:
        nonlocal read
        async for chunk in feed(files, [1000]):
            yield chunk
        for seed in range(1000):
            read += 1
            yield part("files", pdf_bytes(2000, seed=seed))

    error = await refusal(endless_batch(), tmp_path, max_files=3)
    assert isinstance(error, TooManyFiles)
    assert error.fields == {"index": 3}
    assert read == 1


async def test_an_empty_file_is_400_naming_it(tmp_path: Path) -> None:
    body = multipart(part("files", pdf_bytes(2000)), part("files", b"", b"empty.pdf"))
    error = await refusal(feed(body, [300]), tmp_path)
    assert isinstance(error, MalformedRequest)
    assert error.fields == {"index": 1}


@pytest.mark.parametrize(
    "body",
    [
        multipart(),
        multipart(part("file", pdf_bytes(2000), b"single-field.pdf")),
        multipart(part("note", b"no files here")),
        b"--" + BOUNDARY + b"\r\n\x00 not a header\r\n\r\n" + b"y" * 5000,
    ],
    ids=["no-parts", "file-not-files", "other-field", "garbage"],
)
async def test_a_body_without_files_is_400_for_the_request(tmp_path: Path, body: bytes) -> None:
    error = await refusal(feed(body, [1000]), tmp_path)
    assert isinstance(error, MalformedRequest)
    assert error.fields == {}


async def test_a_body_cut_inside_a_later_file_removes_the_earlier_ones(tmp_path: Path) -> None:
    """The client stops inside file 1, after a slice of it reached the disk."""
    body = multipart(part("files", pdf_bytes(5000)), part("files", pdf_bytes(3 * MiB)))
    error = await refusal(feed(body[: 2 * MiB], [64 * 1024]), tmp_path)
    assert isinstance(error, MalformedRequest)
    assert error.fields == {"index": 1}


@pytest.mark.parametrize("content_type", [None, "application/json", "multipart/form-data"])
async def test_a_body_that_is_not_multipart_is_400_before_reading(
    tmp_path: Path, content_type: str | None
) -> None:
    with pytest.raises(MalformedRequest, match="'files'"):
        await spool(never_read(), tmp_path, content_type=content_type)
    assert_nothing_left(tmp_path)


async def test_a_content_length_over_the_batch_cap_is_refused_before_reading(
    tmp_path: Path,
) -> None:
    declared = str(2 * (MiB + ENVELOPE_BYTES) + 1)
    with pytest.raises(UploadTooLarge):
        await spool(never_read(), tmp_path, max_bytes=MiB, max_files=2, content_length=declared)
    assert_nothing_left(tmp_path)


async def test_a_cancelled_batch_leaves_nothing(tmp_path: Path) -> None:
    body = multipart(part("files", pdf_bytes(2 * MiB)), part("files", pdf_bytes(3 * MiB)))
    halfway = asyncio.Event()

    async def stalling(sent: Sequence[int]) -> AsyncIterator[bytes]:
        async for chunk in feed(body[: 4 * MiB], sent):
            yield chunk
        halfway.set()
        await asyncio.Event().wait()
        yield b""  # pragma: no cover

    task = asyncio.create_task(spool(stalling([64 * 1024]), tmp_path))
    await asyncio.wait_for(halfway.wait(), 10)
    assert (tmp_path / "0.part").exists() and (tmp_path / "1.part").exists()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_nothing_left(tmp_path)
