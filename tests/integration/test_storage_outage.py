"""An S3 outage, with the real server stopped and started again: uploads are refused with 503
and leave nothing behind; a render that cannot store its pages waits, and finishes once the
store is back."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.support.documents import sample
from tests.support.gateway import Gateway, isolated_gateway
from tests.support.http import job_detail, upload, wait_rendered
from tests.support.s3 import S3Server
from tests.support.stored import page_numbers
from tests.support.waiting import wait_until

GEOTOPO_PAGES = 117


@pytest.fixture
async def s3_gateway(s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> AsyncIterator[Gateway]:
    """A gateway storing on `s3_bucket`; the server is running again after the test."""
    try:
        async with isolated_gateway(tmp_path, **s3_server.settings(s3_bucket)) as gateway:
            yield gateway
    finally:
        await asyncio.to_thread(s3_server.start)


async def job_count(gateway: Gateway) -> int:
    async with gateway.services.sessions() as session:
        return int(await session.scalar(text("SELECT count(*) FROM jobs")) or 0)


def temp_uploads(gateway: Gateway) -> list[str]:
    return sorted(p.name for p in gateway.settings.temp_dir.glob("*.upload"))


async def test_an_upload_during_an_outage_is_503_and_leaves_nothing(
    s3_server: S3Server, s3_gateway: Gateway
) -> None:
    client = s3_gateway.client
    await asyncio.to_thread(s3_server.stop)
    pdf = sample("pdflatex-4-pages.pdf").read_bytes()
    refused = await client.post(
        "/ocrpdf", params={"dedup": "false"}, files={"file": ("a.pdf", pdf)}
    )
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"] == "service_unavailable"
    assert int(refused.headers["retry-after"]) > 0
    image = await client.post(
        "/images", files={"file": ("smile.png", sample("smile.png").read_bytes())}
    )
    assert image.status_code == 503, image.text
    health = (await client.get("/health")).json()
    assert health["status"] == "degraded" and health["storage"]["ok"] is False
    assert await job_count(s3_gateway) == 0
    assert temp_uploads(s3_gateway) == []
    async with s3_gateway.services.sessions() as session:
        assert await session.scalar(text("SELECT count(*) FROM images")) == 0

    await asyncio.to_thread(s3_server.start)
    accepted = await upload(client, "a.pdf", pdf)
    await wait_rendered(client, accepted["job_id"])
    assert await page_numbers(s3_gateway.services, accepted["job_id"]) == [1, 2, 3, 4]
    assert (await client.get("/health")).json()["storage"]["ok"] is True


async def test_a_render_that_cannot_store_its_pages_is_finished_by_a_retry(
    s3_server: S3Server, s3_gateway: Gateway
) -> None:
    client, services = s3_gateway.client, s3_gateway.services
    accepted = await upload(client, sample("GeoTopo-komprimiert.pdf"))
    job_id = accepted["job_id"]

    async def some_rendered() -> bool:
        return int((await job_detail(client, job_id))["rendered_pages"]) >= 8

    await wait_until(some_rendered, timeout=60, interval=0.02)
    await asyncio.to_thread(s3_server.stop)

    async def render_handed_back() -> bool:
        async with services.sessions() as session:
            released = await session.scalar(
                text("SELECT render_lease_until < now() FROM jobs WHERE job_id = :j"),
                {"j": uuid.UUID(job_id)},
            )
        return bool(released) and job_id not in map(str, services.renderer.rendering_job_ids)

    await wait_until(render_handed_back, timeout=60)
    paused = await job_detail(client, job_id)
    assert paused["error"] is None and paused["status"] == "pending", paused
    assert 8 <= paused["rendered_pages"] < GEOTOPO_PAGES, "the outage came too late"
    assert temp_uploads(s3_gateway) == [f"{job_id}.upload"], "the upload is kept for the retry"

    await asyncio.to_thread(s3_server.start)
    # Every page with a row has its PNG: rows are written only after the store took them.
    stored = await page_numbers(services, job_id)
    assert {p["page_number"] for p in paused["pages"]} <= set(stored)

    async def finished() -> bool:
        await services.renderer.resume_unfinished()  # the maintenance loop's retry, sooner
        job = await job_detail(client, job_id)
        return bool(job["rendered_pages"] == GEOTOPO_PAGES)

    await wait_until(finished, timeout=90, interval=0.5)
    job = await wait_rendered(client, job_id)
    assert job["error"] is None
    assert [p["page_number"] for p in job["pages"]] == list(range(1, GEOTOPO_PAGES + 1))
    assert await page_numbers(services, job_id) == list(range(1, GEOTOPO_PAGES + 1))
    async with services.sessions() as session:
        attempts = await session.scalar(
            text("SELECT render_attempts FROM jobs WHERE job_id = :j"), {"j": uuid.UUID(job_id)}
        )
    assert attempts is not None and attempts <= 1, "an outage does not use up attempts"

    async def upload_removed() -> bool:
        return temp_uploads(s3_gateway) == []

    await wait_until(upload_removed, timeout=10)
