"""Streaming a multipart upload to disk: parsing at any chunking, the caps, the refusals, and
nothing left behind on an error. Pure asyncio and files, fed by an async iterator of chunks."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import random
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path

import pytest

from ocr_gateway.core.errors import (
    GatewayError,
    MalformedRequest,
    UnsupportedMediaType,
    UploadTooLarge,
)
from ocr_gateway.uploads.media import IMAGE_TYPES, PDF_TYPES, MediaType
from ocr_gateway.uploads.spool import SpooledUpload, clean_filename, spool_upload

BOUNDARY = b"----gatewayBoundary7MA4YWxkTrZu0gW"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY.decode()}"
MiB = 1024 * 1024
PNG_HEAD = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"

# A file part that ends in a near-miss of the boundary: the parser must keep it as data.
NEAR_MISS = b"\r\n--" + BOUNDARY[:-1] + b"X\r\n--" + BOUNDARY[:5]


def pdf_bytes(size: int, seed: int = 1) -> bytes:
    """`size` bytes that sniff as a PDF: a header, random binary, and boundary near-misses."""
    head = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + NEAR_MISS
    body = random.Random(seed).randbytes(max(0, size - len(head)))
    return (head + body)[:size]


def part(name: str, content: bytes, filename: bytes | None = None, ctype: bytes = b"") -> bytes:
    disposition = b'form-data; name="' + name.encode() + b'"'
    if filename is not None:
        disposition += b'; filename="' + filename + b'"'
    headers = b"Content-Disposition: " + disposition + b"\r\n"
    if ctype:
        headers += b"Content-Type: " + ctype + b"\r\n"
    return b"--" + BOUNDARY + b"\r\n" + headers + b"\r\n" + content + b"\r\n"


def multipart(*parts: bytes) -> bytes:
    return b"".join(parts) + b"--" + BOUNDARY + b"--\r\n"


async def feed(body: bytes, sizes: Iterable[int]) -> AsyncIterator[bytes]:
    """Yield `body` in chunks of the given sizes, cycling through them."""
    sizes = list(sizes)
    position, turn = 0, 0
    while position < len(body):
        size = sizes[turn % len(sizes)]
        yield body[position : position + size]
        position += size
        turn += 1
        await asyncio.sleep(0)


async def split_at(body: bytes, cuts: Sequence[int]) -> AsyncIterator[bytes]:
    """Yield `body` cut at the given offsets."""
    edges = [0, *cuts, len(body)]
    for start, end in itertools.pairwise(edges):
        yield body[start:end]


async def never_read() -> AsyncIterator[bytes]:
    pytest.fail("the body was read although the headers were enough to refuse it")
    yield b""  # pragma: no cover - makes this an async generator


async def spool(
    body: AsyncIterator[bytes],
    destination: Path,
    *,
    max_bytes: int = 4 * MiB,
    accepted: frozenset[MediaType] = PDF_TYPES,
    content_type: str | None = CONTENT_TYPE,
    content_length: str | None = None,
) -> SpooledUpload:
    return await spool_upload(
        body,
        content_type,
        content_length,
        destination,
        max_bytes=max_bytes,
        accepted=accepted,
    )


def awkward_cuts(body: bytes, content: bytes) -> list[int]:
    """Offsets inside the part headers, inside the near-miss, and inside the closing boundary."""
    start = body.index(content)
    near_miss = start + content.index(NEAR_MISS)
    closing = body.rindex(b"--" + BOUNDARY)
    points = [
        body.index(b"Content-Disposition") + 7,
        start - 3,  # inside the blank line after the part headers
        start + 1,
        near_miss + 3,
        near_miss + len(NEAR_MISS) - 2,
        closing - 1,  # between the CR and LF before the boundary
        closing + 1,
        closing + len(BOUNDARY) // 2,
        closing + len(BOUNDARY) + 3,
    ]
    return sorted(set(points))


# ---------------------------------------------------------------- accepted uploads

CHUNKINGS: dict[str, Sequence[int]] = {
    "whole": [1 << 30],
    "bytes": [1],
    "primes": [7, 13, 1021, 3],
    "slices": [4096],
}


@pytest.mark.parametrize("chunking", CHUNKINGS)
async def test_the_file_part_is_written_whole_at_any_chunking(
    tmp_path: Path, chunking: str
) -> None:
    content = pdf_bytes(3000)
    body = multipart(
        part("note", b"before the file"),
        part("file", content, b"report.pdf", b"application/octet-stream"),
        part("after", b"a field after the file"),
    )
    destination = tmp_path / "upload.part"
    spooled = await spool(feed(body, CHUNKINGS[chunking]), destination)
    assert spooled == SpooledUpload(
        destination, "report.pdf", MediaType.PDF, len(content), hashlib.sha256(content).digest()
    )
    assert destination.read_bytes() == content


async def test_cuts_inside_the_headers_and_boundaries_change_nothing(tmp_path: Path) -> None:
    content = pdf_bytes(5000, seed=2)
    body = multipart(part("file", content, b"cut.pdf"))
    cuts = awkward_cuts(body, content)
    for index in range(len(cuts) + 1):
        destination = tmp_path / f"upload-{index}.part"
        # Each cut alone, then all of them at once.
        chosen = cuts[index : index + 1] if index < len(cuts) else cuts
        spooled = await spool(split_at(body, chosen), destination)
        assert spooled.size == len(content)
        assert destination.read_bytes() == content, chosen


@pytest.mark.parametrize("chunk", [64 * 1024, 100_003])
async def test_a_file_of_several_write_slices_is_written_in_order(
    tmp_path: Path, chunk: int
) -> None:
    content = pdf_bytes(3 * MiB + 12345, seed=3)
    body = multipart(part("file", content, b"big.pdf"))
    destination = tmp_path / "big.part"
    spooled = await spool(feed(body, [chunk]), destination)
    assert spooled.size == len(content)
    assert destination.read_bytes() == content


async def test_a_file_of_exactly_the_cap_is_accepted(tmp_path: Path) -> None:
    content = pdf_bytes(100_000)
    body = multipart(part("file", content, b"exact.pdf"))
    destination = tmp_path / "exact.part"
    spooled = await spool(
        feed(body, [8192]),
        destination,
        max_bytes=len(content),
        content_length=str(len(body)),
    )
    assert spooled.size == len(content)
    assert destination.read_bytes() == content


async def test_an_image_smaller_than_the_sniff_window_is_sniffed_at_the_end(
    tmp_path: Path,
) -> None:
    content = PNG_HEAD + b"\x00" * 40
    body = multipart(part("file", content, b"tiny.png"))
    destination = tmp_path / "tiny.part"
    spooled = await spool(feed(body, [5]), destination, accepted=IMAGE_TYPES)
    assert spooled.media_type == MediaType.PNG
    assert destination.read_bytes() == content


async def test_only_the_first_file_field_is_kept(tmp_path: Path) -> None:
    first, second = pdf_bytes(2000, seed=4), pdf_bytes(3000, seed=5)
    body = multipart(part("file", first, b"first.pdf"), part("file", second, b"second.pdf"))
    destination = tmp_path / "first.part"
    spooled = await spool(feed(body, [333]), destination)
    assert (spooled.filename, spooled.size) == ("first.pdf", len(first))
    assert destination.read_bytes() == first


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("résumé.pdf".encode(), "résumé.pdf"),
        ("résumé.pdf".encode("latin-1"), "résumé.pdf"),  # not UTF-8: read as Latin-1
        (b"a\x01b\x1bc\x7f.pdf", "abc.pdf"),
        (b"", "upload"),
        (b"   ", "upload"),
    ],
)
async def test_the_filename_is_decoded_and_cleaned(
    tmp_path: Path, raw: bytes, expected: str
) -> None:
    body = multipart(part("file", pdf_bytes(2000), raw))
    spooled = await spool(feed(body, [1 << 20]), tmp_path / "named.part")
    assert spooled.filename == expected


# ---------------------------------------------------------------- refusals


def assert_nothing_left(tmp_path: Path) -> None:
    assert list(tmp_path.iterdir()) == [], "a refused upload leaves no file behind"


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "application/json",
        "application/pdf",
        "multipart/form-data",  # no boundary
        "multipart/mixed; boundary=abc",
        "multipart/form-data; boundary=",
    ],
)
async def test_a_body_that_is_not_multipart_form_data_is_400(
    tmp_path: Path, content_type: str | None
) -> None:
    with pytest.raises(MalformedRequest):
        await spool(never_read(), tmp_path / "x.part", content_type=content_type)
    assert_nothing_left(tmp_path)


async def test_a_content_length_over_the_cap_is_refused_before_reading(tmp_path: Path) -> None:
    with pytest.raises(UploadTooLarge):
        await spool(never_read(), tmp_path / "x.part", max_bytes=MiB, content_length=str(10 * MiB))
    assert_nothing_left(tmp_path)


@pytest.mark.parametrize("chunk", [4096, 1 << 30])
async def test_a_file_one_byte_over_the_cap_is_413_and_removed(tmp_path: Path, chunk: int) -> None:
    """With no Content-Length, the cap is counted as bytes arrive; slices already written go."""
    max_bytes = 2 * MiB + 100
    body = multipart(part("file", pdf_bytes(max_bytes + 1), b"over.pdf"))
    with pytest.raises(UploadTooLarge):
        await spool(feed(body, [chunk]), tmp_path / "over.part", max_bytes=max_bytes)
    assert_nothing_left(tmp_path)


async def test_a_body_far_over_the_cap_stops_being_read(tmp_path: Path) -> None:
    """A huge field that is not the file still counts: reading stops near the cap."""
    read = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal read
        yield b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="pad"\r\n\r\n'
        while True:
            read += 64 * 1024
            yield b"x" * (64 * 1024)

    with pytest.raises(UploadTooLarge):
        await spool(endless(), tmp_path / "pad.part", max_bytes=MiB)
    assert read < 4 * MiB
    assert_nothing_left(tmp_path)


@pytest.mark.parametrize(
    "body",
    [
        multipart(part("note", b"no file here")),
        multipart(part("upload", pdf_bytes(2000), b"wrong-name.pdf")),
        multipart(),
        # The file part never ends: the body was cut off.
        part("file", pdf_bytes(2000), b"cut.pdf")[:-200],
    ],
    ids=["other-field", "wrong-name", "no-parts", "truncated"],
)
async def test_a_body_without_a_complete_file_field_is_400(tmp_path: Path, body: bytes) -> None:
    with pytest.raises(MalformedRequest):
        await spool(feed(body, [1000]), tmp_path / "x.part")
    assert_nothing_left(tmp_path)


async def test_garbage_instead_of_multipart_is_400(tmp_path: Path) -> None:
    body = b"--" + BOUNDARY + b"\r\n\x00\x01 this is not a header line\r\n\r\n" + b"y" * 5000
    with pytest.raises(MalformedRequest):
        await spool(feed(body, [1000]), tmp_path / "x.part")
    assert_nothing_left(tmp_path)


async def test_an_empty_file_is_400(tmp_path: Path) -> None:
    body = multipart(part("file", b"", b"empty.pdf"))
    with pytest.raises(MalformedRequest, match="empty"):
        await spool(feed(body, [10]), tmp_path / "x.part")
    assert_nothing_left(tmp_path)


@pytest.mark.parametrize(
    ("content", "accepted"),
    [
        (PNG_HEAD + b"\x00" * 5000, PDF_TYPES),  # an image to the PDF endpoint
        (pdf_bytes(5000), IMAGE_TYPES),  # a PDF to the image endpoint
        (b"just some text\n" * 400, PDF_TYPES),  # junk, longer than the sniff window
        (b"tiny junk", PDF_TYPES | IMAGE_TYPES),  # junk, shorter than it
    ],
    ids=["png-as-pdf", "pdf-as-image", "long-junk", "short-junk"],
)
async def test_the_wrong_type_is_415_and_removed(
    tmp_path: Path, content: bytes, accepted: frozenset[MediaType]
) -> None:
    body = multipart(part("file", content, b"claims-to-be.pdf", b"application/pdf"))
    with pytest.raises(UnsupportedMediaType):
        await spool(feed(body, [700]), tmp_path / "x.part", accepted=accepted)
    assert_nothing_left(tmp_path)


async def test_a_client_that_disconnects_mid_file_leaves_nothing(tmp_path: Path) -> None:
    body = multipart(part("file", pdf_bytes(3 * MiB), b"big.pdf"))
    destination = tmp_path / "gone.part"

    async def disconnecting() -> AsyncIterator[bytes]:
        async for chunk in feed(body[: 2 * MiB], [64 * 1024]):
            yield chunk
        assert destination.exists(), "a write slice reached the disk before the disconnect"
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await spool(disconnecting(), destination)
    assert_nothing_left(tmp_path)


async def test_a_cancelled_upload_leaves_nothing(tmp_path: Path) -> None:
    body = multipart(part("file", pdf_bytes(3 * MiB), b"big.pdf"))
    destination = tmp_path / "cancelled.part"
    halfway = asyncio.Event()

    async def stalling() -> AsyncIterator[bytes]:
        async for chunk in feed(body[: 2 * MiB], [64 * 1024]):
            yield chunk
        halfway.set()
        await asyncio.Event().wait()  # the client stalls; the server gives up on it
        yield b""  # pragma: no cover

    task = asyncio.create_task(spool(stalling(), destination))
    await asyncio.wait_for(halfway.wait(), 10)
    assert destination.exists()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_nothing_left(tmp_path)


def test_every_refusal_is_a_gateway_error() -> None:
    for error in (MalformedRequest, UploadTooLarge, UnsupportedMediaType):
        assert issubclass(error, GatewayError)
    assert (MalformedRequest.status_code, UploadTooLarge.status_code) == (400, 413)
    assert UnsupportedMediaType.status_code == 415


# ---------------------------------------------------------------- clean_filename


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("report.pdf", "report.pdf"),
        ("  spaced.pdf  ", "spaced.pdf"),
        ("tab\there.pdf", "tabhere.pdf"),
        ("new\nline\r.pdf", "newline.pdf"),
        ("nul\x00byte.pdf", "nulbyte.pdf"),
        ("bidi\u202eftp.exe", "bidiftp.exe"),  # a right-to-left override is a format char
        ("zero\u200bwidth.pdf", "zerowidth.pdf"),
        ("../../etc/passwd", "../../etc/passwd"),  # display text only; never a path
        ("日本語.pdf", "日本語.pdf"),
        ("", "upload"),
        ("\x00\x01\x02", "upload"),
        ("   ", "upload"),
    ],
)
def test_clean_filename(raw: str, expected: str) -> None:
    assert clean_filename(raw) == expected


def test_clean_filename_keeps_at_most_255_characters() -> None:
    assert clean_filename("a" * 1000) == "a" * 255
    assert clean_filename("é" * 300) == "é" * 255
    assert clean_filename("\x00" * 500 + "name.pdf") == "name.pdf"
