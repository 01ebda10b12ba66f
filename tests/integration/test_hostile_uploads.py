"""Hostile uploads: a tiny file that claims enormous work, malformed files, library errors.

Each file is made in the test (tests/support/hostile.py). None may delay other users' uploads,
get a 5xx, or hide the real reason a job failed.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from ocr_gateway.components import Components
from tests.support.documents import sample
from tests.support.gateway import isolated_gateway
from tests.support.hostile import (
    animated_webp,
    pdf_with_lying_page_count,
    pdf_with_nested_arrays,
    tiff_frame_without_width,
)
from tests.support.http import job_detail, upload, wait_for_job, wait_rendered

ORDINARY_ANSWER_S = 5.0


async def _post(
    client: httpx.AsyncClient, kind: str, name: str, data: bytes
) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await client.post(f"/ocr{kind}", files={"file": (name, data)})
    return response, time.monotonic() - started


async def _no_job_and_no_temp_file(services: Components) -> None:
    async with services.sessions() as session:
        jobs = (await session.execute(text("SELECT count(*) FROM jobs"))).scalar_one()
    assert jobs == 0
    assert list(services.settings.temp_dir.iterdir()) == []


async def test_a_hostile_animation_does_not_delay_ordinary_uploads(tmp_path: Path) -> None:
    """A 90 KB WebP declaring 2,000 frames of 5000x5000, sent with three ordinary uploads to a
    gateway whose MAX_PAGES allows 2,000: it is refused from its header in milliseconds, and
    the others are answered within seconds and render."""
    hostile = animated_webp(2000, 5000, 5000)
    assert len(hostile) < 100_000
    ordinary = [
        ("pdf", "pdflatex-4-pages.pdf", sample("pdflatex-4-pages.pdf").read_bytes()),
        ("image", "smile.png", sample("smile.png").read_bytes()),
        ("image", "image.jpg", sample("image.jpg").read_bytes()),
    ]
    async with isolated_gateway(tmp_path, max_pages=2000) as gateway:
        client = gateway.client
        answers = await asyncio.gather(
            _post(client, "image", "hostile.webp", hostile),
            *(_post(client, kind, name, data) for kind, name, data in ordinary),
        )
        (refused, _), *accepted = answers
        assert refused.status_code == 413, refused.text
        assert refused.json()["error"] == "document_too_large"
        assert "MAX_DOCUMENT_PIXELS" in refused.json()["detail"]
        for (response, seconds), (_, name, _) in zip(accepted, ordinary, strict=True):
            assert response.status_code == 202, f"{name}: {response.text}"
            assert seconds < ORDINARY_ANSWER_S, f"{name} answered after {seconds:.1f}s"
        for response, _ in accepted:
            await wait_rendered(client, response.json()["job_id"])


async def test_the_pixel_budget_counts_every_page(tmp_path: Path) -> None:
    """100 frames of 4000x4000: each page is within MAX_PAGE_PIXELS, all of them together are
    not within MAX_DOCUMENT_PIXELS, and the header says so before any frame is decoded."""
    async with isolated_gateway(tmp_path, max_document_pixels=1_000_000_000) as gateway:
        response = await gateway.client.post(
            "/ocrimage", files={"file": ("long.webp", animated_webp(100, 4000, 4000))}
        )
        assert response.status_code == 413, response.text
        body = response.json()
        assert body["error"] == "document_too_large"
        assert "1600000000 pixels" in body["detail"]
        assert "MAX_DOCUMENT_PIXELS" in body["detail"]
        await _no_job_and_no_temp_file(gateway.services)


@pytest.mark.parametrize(
    ("kind", "name", "build", "detail"),
    [
        ("image", "no-width.tiff", tiff_frame_without_width, "Missing dimensions"),
        ("pdf", "count-2000.pdf", lambda: pdf_with_lying_page_count(2000), "page tree"),
        ("pdf", "count-1e9.pdf", lambda: pdf_with_lying_page_count(1_000_000_000), "page tree"),
    ],
)
async def test_malformed_files_are_refused_with_the_library_reason(
    client: httpx.AsyncClient,
    services: Components,
    kind: str,
    name: str,
    build: Any,
    detail: str,
) -> None:
    response = await client.post(f"/ocr{kind}", files={"file": (name, build())})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_document"
    assert detail in body["detail"]
    await _no_job_and_no_temp_file(services)


async def test_a_failed_render_names_the_library_reason(client: httpx.AsyncClient) -> None:
    """MuPDF stops on 100,000 nested arrays with its own `exception stack overflow`; that is
    the job's error, not a failure to pickle the exception that carried it."""
    accepted = await upload(client, "nested.pdf", pdf_with_nested_arrays())
    job = await wait_for_job(client, accepted["job_id"], lambda job: job["error"] is not None)
    assert job["status"] == "failed"
    assert "stack overflow" in job["error"], job["error"]
    assert "pickle" not in job["error"]


async def test_a_long_animation_does_not_hold_every_render_worker(
    client: httpx.AsyncClient,
) -> None:
    """While a 120-frame animation on a 3000x3000 canvas renders, a one-page PDF uploaded after
    it is rendered in full before the animation is: render slots are shared between jobs."""
    frames = 120
    animation = await upload(client, "long.webp", animated_webp(frames, 3000, 3000), kind="image")
    assert animation["total_page_number"] == frames
    pdf = await upload(client, sample("002-trivial-libre-office-writer.pdf"))
    await wait_rendered(client, pdf["job_id"])
    progress = await job_detail(client, animation["job_id"])
    assert progress["rendered_pages"] < frames, "the PDF waited for the whole animation"
    done = await wait_rendered(client, animation["job_id"], timeout=180)
    assert done["rendered_pages"] == frames
