"""A seeded mutation fuzzer over every accepted format, against the app served over real TCP.

Valid files of each format (PDF; PNG and APNG; JPEG; TIFF with LZW, deflate, JPEG and Group 4
compression, multi-page; BMP; WebP, lossy, lossless and animated) are mutated at random: bits
flipped, bytes overwritten with boundary values, ranges inserted, deleted, repeated or cut
off. Each mutant is uploaded on one keep-alive connection. Any 5xx, or a connection the server
drops, fails the test with the seed, the case number and the mutant saved to a file.

`make test` runs it for FUZZ_SECONDS (30 by default); `make fuzz` runs it for 10 minutes.
FUZZ_SEED repeats a run.
"""

from __future__ import annotations

import asyncio
import io
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pymupdf
import pytest
from fastapi import FastAPI
from PIL import Image

from tests.support.documents import blank_pdf, sample
from tests.support.tcp import ConnectionDropped, RawConnection, multipart_file, served

FUZZ_SECONDS = float(os.environ.get("FUZZ_SECONDS", "30"))
# One accepted mutant in this many is left to render, so that the render pool meets them too;
# the rest are deleted at once.
RENDER_EVERY = 10
INTERESTING = (0x00, 0x01, 0x7F, 0x80, 0xFF)


def _image(fmt: str, mode: str = "RGB", size: tuple[int, int] = (64, 48), **save: object) -> bytes:
    image = Image.linear_gradient("L").resize(size)
    if mode != "L":
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


def _animation(fmt: str, frames: int = 3, **save: object) -> bytes:
    images = [Image.new("RGB", (48, 32), (40 * n, 80, 160)) for n in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, fmt, save_all=True, append_images=images[1:], **save)
    return buffer.getvalue()


def _text_pdf() -> bytes:
    doc = pymupdf.open()
    page = doc.new_page(width=300, height=200)
    page.insert_text((20, 40), "Mutation fuzzing: text, an image and a line.", fontsize=9)
    page.insert_image(pymupdf.Rect(20, 60, 84, 108), stream=_image("PNG"))
    page.draw_line((20, 150), (280, 150))
    data: bytes = doc.tobytes(garbage=1, deflate=True)
    doc.close()
    return data


SEEDS: dict[str, Callable[[], bytes]] = {
    "pdf-text": _text_pdf,
    "pdf-pages": lambda: blank_pdf(2, 200, 150),
    "pdf-latex": lambda: sample("pdflatex-4-pages.pdf").read_bytes(),
    "png": lambda: _image("PNG"),
    "png-palette": lambda: _image("PNG", "P"),
    "apng": lambda: _animation("PNG"),
    "jpeg": lambda: _image("JPEG", quality=80),
    "jpeg-progressive": lambda: _image("JPEG", progressive=True),
    "tiff-lzw": lambda: _image("TIFF", compression="tiff_lzw"),
    "tiff-deflate": lambda: _image("TIFF", compression="tiff_adobe_deflate"),
    "tiff-jpeg": lambda: _image("TIFF", compression="jpeg"),
    "tiff-group4": lambda: _image("TIFF", "1", compression="group4"),
    "tiff-pages": lambda: _animation("TIFF", compression="tiff_lzw"),
    "bmp": lambda: _image("BMP"),
    "webp-lossy": lambda: _image("WEBP", quality=70),
    "webp-lossless": lambda: _image("WEBP", lossless=True),
    "webp-animated": lambda: _animation("WEBP"),
}


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to four random edits; nine in ten spare the first 16 bytes, so most mutants still
    announce their format and reach the decoders rather than the type check."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        start = 16 if len(out) > 32 and rng.random() < 0.9 else 0
        at = rng.randrange(start, max(start + 1, len(out)))
        edit = rng.randrange(7)
        if edit == 0:
            out[at % len(out)] ^= 1 << rng.randrange(8)
        elif edit == 1:
            out[at % len(out)] = rng.choice(INTERESTING)
        elif edit == 2:
            width = rng.choice((2, 4))
            value = rng.choice((0, 1, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF))
            out[at : at + width] = value.to_bytes(8, "little")[:width]
        elif edit == 3:
            out[at:at] = rng.randbytes(rng.randint(1, 64))
        elif edit == 4:
            del out[at : at + rng.randint(1, 256)]
        elif edit == 5:
            size = rng.randint(1, 256)
            out[at:at] = out[at : at + size] * rng.randint(1, 8)
        else:
            del out[max(start + 1, at) :]
        if not out:
            out = bytearray(data[:1])
    return bytes(out)


async def test_mutated_uploads_never_get_5xx_nor_lose_the_connection(
    app: FastAPI, tmp_path: Path
) -> None:
    seed = int(os.environ.get("FUZZ_SEED", str(random.SystemRandom().randrange(2**32))))
    print(f"mutation fuzzer: FUZZ_SEED={seed} FUZZ_SECONDS={FUZZ_SECONDS:g}")
    rng = random.Random(seed)
    corpus = {name: build() for name, build in SEEDS.items()}
    statuses: dict[int, int] = {}
    kept: list[str] = []
    cases = 0
    deadline = time.monotonic() + FUZZ_SECONDS
    async with served(app) as port:
        connection = await RawConnection.open(port)
        try:
            while time.monotonic() < deadline:
                cases += 1
                name = rng.choice(sorted(corpus))
                mutant = mutate(corpus[name], rng)
                route = "/api/v1/ocrpdf" if name.startswith("pdf") else "/api/v1/ocrimage"
                body, content_type = multipart_file(mutant, f"case-{cases}")
                where = f"FUZZ_SEED={seed} case {cases} ({name})"
                try:
                    answer = await connection.request(
                        "POST", route, body, {"Content-Type": content_type}
                    )
                except ConnectionDropped as exc:
                    _keep(tmp_path, cases, mutant)
                    pytest.fail(f"{where}: connection dropped: {exc}")
                statuses[answer.status] = statuses.get(answer.status, 0) + 1
                if answer.status >= 500:
                    path = _keep(tmp_path, cases, mutant)
                    pytest.fail(f"{where}: {answer.status} {answer.body[:300]!r}; input {path}")
                assert answer.headers.get("content-type") == "application/json", where
                if answer.status != 202:
                    assert set(orjson.loads(answer.body)) == {"error", "detail"}, where
                    continue
                job_id = orjson.loads(answer.body)["job_id"]
                if cases % RENDER_EVERY:
                    deleted = await connection.request(
                        "DELETE", f"/api/v1/admin/delete/job/{job_id}"
                    )
                    assert deleted.status == 200, where
                else:
                    kept.append(job_id)
            for job_id in kept:
                await _wait_render_over(connection, job_id, seed)
        finally:
            await connection.close()
    print(f"mutation fuzzer: {cases} cases, statuses {dict(sorted(statuses.items()))}")
    assert cases > 0


def _keep(tmp_path: Path, case: int, mutant: bytes) -> Path:
    path = tmp_path / f"fuzz-case-{case}.bin"
    path.write_bytes(mutant)
    return path


async def _wait_render_over(connection: RawConnection, job_id: str, seed: int) -> None:
    """An accepted mutant's render ends: every page rendered, or the job failed with a reason."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        answer = await connection.request("GET", f"/api/v1/admin/job/{job_id}")
        assert answer.status == 200
        job = orjson.loads(answer.body)
        if job["error"] is not None:
            assert "pickle" not in job["error"], f"FUZZ_SEED={seed} job {job_id}: {job['error']}"
            return
        if job["rendered_pages"] == job["total_page_number"]:
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"FUZZ_SEED={seed}: job {job_id} did not finish rendering")
