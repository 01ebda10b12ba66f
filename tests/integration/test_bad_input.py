"""Bad uploads get a clear 4xx JSON error and leave nothing behind; odd but valid ones render.

Everything goes through the real app, database, broker and render pool. A refused upload must
answer `{"error": kind, "detail": text}` with 400/413/415/422 (never 500), insert no row in
`jobs` and leave no new file or folder in `temp/` or `files/`. Accepted uploads are waited on
until their render task is over, so the autouse cleanup never races a render.
"""

from __future__ import annotations

import io
import random
import re
import struct
import uuid
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pymupdf
import pytest
from PIL import Image, PngImagePlugin
from sqlalchemy import text

from ocr_gateway.components import Components
from tests.support.documents import sample
from tests.support.stored import job_artefact, page_numbers
from tests.support.waiting import wait_until

BOUNDARY = "ocr-gateway-test-7d1f0c"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
REFUSAL_STATUSES = {400, 413, 415, 422}
MAX_FILENAME_CHARS = 255
SLICE = 256 * 1024


# ------------------------------------------------------------------ building request bodies


def part_head(
    *,
    filename: bytes | None = b"upload.bin",
    content_type: bytes = b"application/octet-stream",
    field: bytes = b"file",
) -> bytes:
    disposition = b'form-data; name="' + field + b'"'
    if filename is not None:
        disposition += b'; filename="' + filename + b'"'
    return (
        b"--"
        + BOUNDARY.encode()
        + b"\r\nContent-Disposition: "
        + disposition
        + b"\r\nContent-Type: "
        + content_type
        + b"\r\n\r\n"
    )


def closing() -> bytes:
    return b"\r\n--" + BOUNDARY.encode() + b"--\r\n"


def multipart(
    content: bytes,
    *,
    filename: bytes | None = b"upload.bin",
    content_type: bytes = b"application/octet-stream",
    field: bytes = b"file",
) -> bytes:
    """A hand-built multipart/form-data body with one part, so any filename bytes can be sent."""
    head = part_head(filename=filename, content_type=content_type, field=field)
    return head + content + closing()


def read_sample(name: str) -> bytes:
    return sample(name).read_bytes()


def random_bytes(size: int = 64 * 1024) -> bytes:
    data = random.Random(20240601).randbytes(size)
    assert b"%PDF-" not in data[:1024]
    return data


def truncated_pdf() -> bytes:
    data = read_sample("pdflatex-4-pages.pdf")
    return data[: len(data) // 2]


def xref_corrupt_pdf() -> bytes:
    """A classic-xref PDF whose xref table and startxref offset are overwritten with garbage."""
    data = bytearray(read_sample("002-trivial-libre-office-writer.pdf"))
    marker = data.rfind(b"startxref")
    match = re.compile(rb"startxref\s+(\d+)").match(bytes(data), marker)
    assert match is not None, "the sample has no startxref"
    offset = int(match.group(1))
    assert data[offset : offset + 4] == b"xref", "the sample's startxref does not point at xref"
    end = data.index(b"trailer", offset)
    garbage = (b"\x00#garbage" * (end - offset))[: end - offset]
    data[offset:end] = garbage
    data[match.start(1) : match.end(1)] = b"9" * (match.end(1) - match.start(1))
    assert b"\nxref" not in data
    assert re.search(rb"startxref\s+" + str(offset).encode() + rb"\s", data) is None
    return bytes(data)


def pdf_with_pages(count: int, *, width: float = 595, height: float = 842) -> bytes:
    doc = pymupdf.open()
    for _ in range(count):
        doc.new_page(width=width, height=height)
    data = bytes(doc.tobytes())
    doc.close()
    return data


def png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def bomb_png(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR declares `width` x `height` 8-bit grey pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def pillow_image(fmt: str, *, frames: int = 1) -> bytes:
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    images = [Image.new("RGB", (64, 48), colours[i % len(colours)]) for i in range(frames)]
    buffer = io.BytesIO()
    if frames > 1:
        images[0].save(buffer, format=fmt, save_all=True, append_images=images[1:])
    else:
        images[0].save(buffer, format=fmt)
    return buffer.getvalue()


# ------------------------------------------------------------------ checking the aftermath


def admin_headers(services: Components) -> dict[str, str]:
    key = services.settings.admin_api_key
    return {} if key is None else {"X-API-Key": key.get_secret_value()}


def stored_paths(services: Components) -> set[Path]:
    """Every file and folder under temp/ and files/, except the .gitignore placeholders."""
    found: set[Path] = set()
    for root in (services.settings.temp_dir, services.settings.files_dir):
        found.update(p for p in root.rglob("*") if p.name != ".gitignore")
    return found


async def count_rows(services: Components, table: str) -> int:
    async with services.sessions() as session:
        result = await session.execute(text(f"select count(*) from {table}"))
        return int(result.scalar_one())


async def assert_refused(
    response: httpx.Response,
    services: Components,
    before: set[Path],
    *,
    status: int,
    kind: str,
    detail_contains: str = "",
) -> None:
    assert response.status_code == status, response.text
    assert status in REFUSAL_STATUSES
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    assert body["error"] == kind, body
    assert isinstance(body["detail"], str) and body["detail"].strip(), body
    assert detail_contains.lower() in body["detail"].lower(), body
    assert await count_rows(services, "jobs") == 0
    assert await count_rows(services, "pages") == 0
    assert stored_paths(services) - before == set(), "a refused upload left files behind"


async def wait_render_over(
    client: httpx.AsyncClient, services: Components, job_id: str
) -> dict[str, Any]:
    """Poll the job until its render task is over (all pages rendered, or the job failed)."""
    job: dict[str, Any] = {}
    job_uuid = uuid.UUID(job_id)

    async def render_is_over() -> bool:
        nonlocal job
        response = await client.get(f"/admin/job/{job_id}", headers=admin_headers(services))
        assert response.status_code == 200, response.text
        job = response.json()
        finished = job["status"] == "failed" or job["rendered_pages"] == job["total_page_number"]
        return (
            finished
            and job_uuid not in services.renderer.rendering_job_ids
            and not services.storage.temp_path(job_uuid).exists()
        )

    await wait_until(render_is_over, timeout=30)
    return job


async def assert_accepted(
    client: httpx.AsyncClient,
    services: Components,
    response: httpx.Response,
    *,
    pages: int,
    media_type: str,
) -> dict[str, Any]:
    """The upload was accepted with `pages` pages, rendered them all, and the job is healthy."""
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["total_page_number"] == pages
    assert accepted["media_type"] == media_type
    job = await wait_render_over(client, services, accepted["job_id"])
    assert job["error"] is None, job
    assert job["status"] != "failed", job
    assert job["total_page_number"] == pages
    assert job["rendered_pages"] == pages
    assert job["filename"] == accepted["filename"]
    assert await page_numbers(services, accepted["job_id"]) == list(range(1, pages + 1))
    for n in range(1, pages + 1):
        png = await job_artefact(services, accepted["job_id"], f"{n}.png")
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
    return job


# ------------------------------------------------------------------ refused uploads


@dataclass(frozen=True, slots=True)
class Refusal:
    path: str
    build: Callable[[], bytes]
    status: int
    kind: str
    content_type: str | None = MULTIPART
    detail_contains: str = ""


REFUSALS: dict[str, Refusal] = {
    "random-bytes-as-pdf": Refusal(
        "/ocrpdf",
        lambda: multipart(random_bytes(), filename=b"r.pdf", content_type=b"application/pdf"),
        415,
        "unsupported_media_type",
    ),
    "png-named-pdf": Refusal(
        "/ocrpdf",
        lambda: multipart(
            read_sample("smile.png"), filename=b"x.pdf", content_type=b"application/pdf"
        ),
        415,
        "unsupported_media_type",
        detail_contains="image/png",
    ),
    "pdf-as-png": Refusal(
        "/ocrimage",
        lambda: multipart(
            read_sample("002-trivial-libre-office-writer.pdf"),
            filename=b"x.png",
            content_type=b"image/png",
        ),
        415,
        "unsupported_media_type",
        detail_contains="application/pdf",
    ),
    "jpeg-magic-then-garbage": Refusal(
        "/ocrimage",
        lambda: multipart(b"\xff\xd8\xff\xe0" + random_bytes(4096), filename=b"x.jpg"),
        422,
        "invalid_document",
    ),
    "empty-file-pdf": Refusal(
        "/ocrpdf",
        lambda: multipart(b"", filename=b"empty.pdf", content_type=b"application/pdf"),
        400,
        "bad_request",
        detail_contains="empty",
    ),
    "empty-file-image": Refusal(
        "/ocrimage",
        lambda: multipart(b"", filename=b"empty.png", content_type=b"image/png"),
        400,
        "bad_request",
        detail_contains="empty",
    ),
    "no-file-field": Refusal(
        "/ocrpdf",
        lambda: multipart(read_sample("002-trivial-libre-office-writer.pdf"), field=b"document"),
        400,
        "bad_request",
    ),
    "no-parts-at-all": Refusal(
        "/ocrpdf", lambda: b"--" + BOUNDARY.encode() + b"--\r\n", 400, "bad_request"
    ),
    "unterminated-multipart": Refusal(
        "/ocrpdf",
        lambda: part_head(filename=b"x.pdf") + read_sample("002-trivial-libre-office-writer.pdf"),
        400,
        "bad_request",
    ),
    "json-body": Refusal(
        "/ocrpdf", lambda: b'{"file": "x.pdf"}', 400, "bad_request", "application/json"
    ),
    "raw-pdf-body": Refusal(
        "/ocrpdf",
        lambda: read_sample("002-trivial-libre-office-writer.pdf"),
        400,
        "bad_request",
        "application/pdf",
    ),
    "no-content-type": Refusal(
        "/ocrimage", lambda: read_sample("smile.png"), 400, "bad_request", None
    ),
    "multipart-without-boundary": Refusal(
        "/ocrpdf",
        lambda: multipart(read_sample("002-trivial-libre-office-writer.pdf")),
        400,
        "bad_request",
        "multipart/form-data",
    ),
    "encrypted-pdf": Refusal(
        "/ocrpdf",
        lambda: multipart(read_sample("libreoffice-writer-password.pdf"), filename=b"p.pdf"),
        422,
        "invalid_document",
        detail_contains="encrypted",
    ),
    "zero-page-pdf": Refusal(
        "/ocrpdf",
        lambda: multipart(read_sample("unreadablemetadata.pdf"), filename=b"z.pdf"),
        422,
        "invalid_document",
        detail_contains="no pages",
    ),
    "truncated-pdf": Refusal(
        "/ocrpdf",
        lambda: multipart(truncated_pdf(), filename=b"half.pdf"),
        422,
        "invalid_document",
        detail_contains="truncated",
    ),
    "too-many-pages": Refusal(
        "/ocrpdf",
        lambda: multipart(pdf_with_pages(201), filename=b"many.pdf"),
        413,
        "too_many_pages",
        detail_contains="201",
    ),
    "giant-mediabox": Refusal(
        "/ocrpdf",
        lambda: multipart(pdf_with_pages(1, width=20000, height=20000), filename=b"big.pdf"),
        413,
        "page_too_large",
    ),
    "truncated-png": Refusal(
        "/ocrimage",
        lambda: multipart(pillow_image("PNG")[:60], filename=b"cut.png"),
        422,
        "invalid_document",
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS.values()), ids=list(REFUSALS))
async def test_bad_upload_is_refused_and_leaves_nothing(
    client: httpx.AsyncClient, services: Components, case: Refusal
) -> None:
    before = stored_paths(services)
    headers = {} if case.content_type is None else {"Content-Type": case.content_type}
    response = await client.post(case.path, content=case.build(), headers=headers)
    await assert_refused(
        response,
        services,
        before,
        status=case.status,
        kind=case.kind,
        detail_contains=case.detail_contains,
    )


@pytest.mark.parametrize(
    ("width", "height"),
    [(100_000, 100_000), (6_000, 5_000)],
    ids=["gigapixel-header", "just-over-the-pixel-budget"],
)
async def test_decompression_bomb_png_is_refused(
    client: httpx.AsyncClient, services: Components, width: int, height: int
) -> None:
    """A few hundred bytes of PNG declaring too many pixels is refused before any decoding."""
    data = bomb_png(width, height)
    assert len(data) < 1024
    # The PNG is well formed: the refusal is about its size, not about broken bytes.
    assert PngImagePlugin.PngImageFile(io.BytesIO(data)).size == (width, height)
    assert width * height > services.settings.max_page_pixels
    before = stored_paths(services)
    response = await client.post(
        "/ocrimage",
        content=multipart(data, filename=b"bomb.png", content_type=b"image/png"),
        headers={"Content-Type": MULTIPART},
    )
    await assert_refused(response, services, before, status=413, kind="page_too_large")


async def test_oversized_upload_with_content_length_is_413(
    client: httpx.AsyncClient, services: Components
) -> None:
    """A Content-Length far over the cap is refused before the body is read at all."""
    max_bytes = services.settings.max_upload_bytes
    payload = multipart(
        b"%PDF-1.7\n" + bytes(max_bytes + 1024 * 1024),
        filename=b"big.pdf",
        content_type=b"application/pdf",
    )
    before = stored_paths(services)
    pulled = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        for start in range(0, len(payload), SLICE):
            pulled += 1
            yield payload[start : start + SLICE]

    response = await client.post(
        "/ocrpdf",
        content=body(),
        headers={"Content-Type": MULTIPART, "Content-Length": str(len(payload))},
    )
    assert int(response.request.headers["content-length"]) > max_bytes
    await assert_refused(response, services, before, status=413, kind="upload_too_large")
    assert pulled <= 1, f"{pulled} slices of the body were read before the refusal"


async def test_upload_one_byte_over_the_cap_is_413(
    client: httpx.AsyncClient, services: Components
) -> None:
    """One byte over passes the Content-Length pre-check, so the streaming count must catch it.

    The body arrives in 256 KiB slices, so the spool has written a partial file to temp/ by the
    time the cap is passed; that file must be removed.
    """
    max_bytes = services.settings.max_upload_bytes
    temp_dir = services.settings.temp_dir
    payload = multipart(
        b"%PDF-1.7\n" + bytes(max_bytes + 1 - 9),
        filename=b"big.pdf",
        content_type=b"application/pdf",
    )
    before = stored_paths(services)
    saw_partial_file = False

    async def body() -> AsyncIterator[bytes]:
        nonlocal saw_partial_file
        for start in range(0, len(payload), SLICE):
            if any(p not in before and p.is_file() for p in temp_dir.iterdir()):
                saw_partial_file = True
            yield payload[start : start + SLICE]

    response = await client.post(
        "/ocrpdf",
        content=body(),
        headers={"Content-Type": MULTIPART, "Content-Length": str(len(payload))},
    )
    assert response.request.headers["content-length"] == str(len(payload))
    await assert_refused(response, services, before, status=413, kind="upload_too_large")
    assert saw_partial_file, "the spool never started writing, so the cleanup went untested"


async def test_oversized_chunked_upload_without_content_length_is_413(
    client: httpx.AsyncClient, services: Components
) -> None:
    """Without Content-Length the cap is enforced as bytes arrive; reading stops right there."""
    max_bytes = services.settings.max_upload_bytes
    temp_dir = services.settings.temp_dir
    before = stored_paths(services)
    piece = bytes(SLICE)
    planned = 4 * max_bytes
    sent = 0
    saw_partial_file = False

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent, saw_partial_file
        yield part_head(filename=b"big.pdf", content_type=b"application/pdf") + b"%PDF-1.7\n"
        while sent < planned:
            if any(p not in before and p.is_file() for p in temp_dir.iterdir()):
                saw_partial_file = True
            sent += len(piece)
            yield piece
        yield closing()

    response = await client.post("/ocrpdf", content=body(), headers={"Content-Type": MULTIPART})
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    await assert_refused(response, services, before, status=413, kind="upload_too_large")
    assert saw_partial_file, "the spool never started writing, so the cleanup went untested"
    assert sent <= max_bytes + 2 * len(piece) + 64 * 1024, "the body was read past the cap"


# ------------------------------------------------------------------ accepted uploads


async def test_upload_of_exactly_the_cap_is_accepted(
    client: httpx.AsyncClient, services: Components
) -> None:
    """The cap is inclusive: a valid PDF padded (in a comment) to exactly MAX_UPLOAD_BYTES."""
    data = read_sample("002-trivial-libre-office-writer.pdf")
    header_end = data.index(b"\n") + 1
    padding = services.settings.max_upload_bytes - len(data) - 2
    padded = data[:header_end] + b"%" + b"x" * padding + b"\n" + data[header_end:]
    assert len(padded) == services.settings.max_upload_bytes
    response = await client.post(
        "/ocrpdf", files={"file": ("exact.pdf", padded, "application/pdf")}
    )
    await assert_accepted(client, services, response, pages=1, media_type="application/pdf")


async def test_xref_corrupt_pdf_is_repaired_and_accepted(
    client: httpx.AsyncClient, services: Components
) -> None:
    """Accepted behaviour, not a refusal: MuPDF rebuilds a garbled xref table by scanning the
    objects, so a PDF whose xref table and startxref offset are garbage still opens with its
    page and renders. The gateway takes it (202) and renders the page like any other."""
    response = await client.post(
        "/ocrpdf",
        content=multipart(xref_corrupt_pdf(), filename=b"xref.pdf"),
        headers={"Content-Type": MULTIPART},
    )
    await assert_accepted(client, services, response, pages=1, media_type="application/pdf")


IMAGES: dict[str, tuple[Callable[[], bytes], str, int]] = {
    "smile.png": (lambda: read_sample("smile.png"), "image/png", 1),
    "smile.jpg": (lambda: read_sample("smile.jpg"), "image/jpeg", 1),
    "smile.tiff": (lambda: read_sample("smile.tiff"), "image/tiff", 1),
    "image.jpg": (lambda: read_sample("image.jpg"), "image/jpeg", 1),
    "pillow.bmp": (lambda: pillow_image("BMP"), "image/bmp", 1),
    "pillow.webp": (lambda: pillow_image("WEBP"), "image/webp", 1),
    "three-frames.tiff": (lambda: pillow_image("TIFF", frames=3), "image/tiff", 3),
}


@pytest.mark.parametrize("name", list(IMAGES))
async def test_image_is_accepted(
    client: httpx.AsyncClient, services: Components, name: str
) -> None:
    build, media_type, pages = IMAGES[name]
    response = await client.post(
        "/ocrimage",
        content=multipart(build(), filename=name.encode()),
        headers={"Content-Type": MULTIPART},
    )
    job = await assert_accepted(client, services, response, pages=pages, media_type=media_type)
    assert job["filename"] == name


HOSTILE_NAMES: dict[str, bytes] = {
    "path-traversal": b"../../etc/x",
    "windows-traversal": b"..\\..\\etc\\x",
    "nul-byte": b"evil\x00name.pdf",
    "ten-thousand-chars": b"a" * 10_000,
    "non-utf8": b"\xff\xfe caf\xe9 \x80\x81.pdf",
}


@pytest.mark.parametrize("raw", list(HOSTILE_NAMES.values()), ids=list(HOSTILE_NAMES))
async def test_hostile_filename_is_stored_as_harmless_text(
    client: httpx.AsyncClient, services: Components, tmp_path: Path, raw: bytes
) -> None:
    content = read_sample("002-trivial-libre-office-writer.pdf")
    before = stored_paths(services)
    response = await client.post(
        "/ocrpdf",
        content=multipart(content, filename=raw, content_type=b"application/pdf"),
        headers={"Content-Type": MULTIPART},
    )
    job = await assert_accepted(client, services, response, pages=1, media_type="application/pdf")

    name = job["filename"]
    assert isinstance(name, str) and name
    assert "\x00" not in name
    assert name.isprintable(), repr(name)
    assert len(name) <= MAX_FILENAME_CHARS
    if raw == HOSTILE_NAMES["ten-thousand-chars"]:
        assert name == "a" * MAX_FILENAME_CHARS
    if raw == HOSTILE_NAMES["nul-byte"]:
        assert name == "evilname.pdf"

    # Nothing was written anywhere but files/<job_id>/ (the temp upload is gone again).
    files_dir = services.settings.files_dir
    job_id = job["job_id"]
    kept = {".gitignore", "images"}  # files/images/ holds /images uploads, no job
    assert [p.name for p in files_dir.iterdir() if p.name not in kept] == [job_id]
    assert stored_paths(services) - before == {files_dir / job_id, files_dir / job_id / "1.png"}
    tmp_root = files_dir.parent
    assert [p for p in tmp_root.rglob("*") if p.name in {"x", "etc"}] == []
    escapes = [
        base / "../../etc/x"
        for base in (files_dir, files_dir / job_id, services.settings.temp_dir, tmp_path)
    ]
    assert [p for p in escapes if p.resolve().exists()] == []


# ------------------------------------------------------------------ path parameters

SOME_UUID = "6f1c2b9e-2d4a-4f7e-9a51-0c3d8e7b1a22"

BAD_PATHS: list[tuple[str, str]] = [
    ("GET", "/admin/job/not-a-uuid"),
    ("GET", "/admin/job/12345"),
    ("GET", f"/admin/job/{SOME_UUID}x"),
    ("POST", "/admin/start/not-a-uuid/page/1"),
    ("POST", f"/admin/start/{SOME_UUID}/page/0"),
    ("POST", f"/admin/start/{SOME_UUID}/page/-3"),
    ("POST", f"/admin/start/{SOME_UUID}/page/abc"),
    ("POST", f"/admin/start/{SOME_UUID}/page/1.5"),
    ("POST", f"/admin/start/{SOME_UUID}/page/99999999999999999999999"),
    ("DELETE", "/admin/delete/job/not-a-uuid/page/1"),
    ("DELETE", f"/admin/delete/job/{SOME_UUID}/page/0"),
    ("DELETE", f"/admin/delete/job/{SOME_UUID}/page/-1"),
    ("DELETE", f"/admin/delete/job/{SOME_UUID}/page/two"),
]


@pytest.mark.parametrize(("method", "path"), BAD_PATHS, ids=[f"{m} {p}" for m, p in BAD_PATHS])
async def test_bad_path_parameter_is_422_validation_error(
    client: httpx.AsyncClient, services: Components, method: str, path: str
) -> None:
    response = await client.request(method, path, headers=admin_headers(services))
    assert response.status_code == 422, response.text
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    assert body["error"] == "validation_error"
    assert isinstance(body["detail"], str) and body["detail"].strip()
    assert "path" in body["detail"]
    assert await count_rows(services, "dispatch_requests") == 0
