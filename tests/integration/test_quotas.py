"""Per-tenant limits: pages pending or in flight, uploads per minute, bytes stored.

Through the real app and database. Each limit is tried from the settings' default (a copy of
the settings given to the upload service) and from the tenant's own row. Over a limit the
answer is 429 with `Retry-After` and `limit` naming it, and the refused upload or batch leaves
no job row, no temp file and no files folder behind.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from ocr_gateway.components import Components
from ocr_gateway.tenants import repository as tenants_repo
from tests.integration.test_bad_input import stored_paths
from tests.support.documents import blank_pdf
from tests.support.http import wait_rendered
from tests.support.stored import job_names


def use_settings(monkeypatch: pytest.MonkeyPatch, services: Components, **values: Any) -> None:
    """The upload service reads these limits instead of the session's settings."""
    monkeypatch.setattr(
        services.uploads, "settings", services.uploads.settings.model_copy(update=values)
    )


async def set_tenant_limits(services: Components, tenant: str, **limits: int) -> None:
    async with services.sessions.begin() as session:
        await tenants_repo.ensure_tenant(session, tenant)
        assignments = ", ".join(f"{name} = :{name}" for name in limits)
        await session.execute(
            text(f"UPDATE tenants SET {assignments} WHERE name = :tenant"),
            {"tenant": tenant, **limits},
        )


async def post_pdf(
    client: httpx.AsyncClient, tenant: str, pages: int, data: bytes | None = None
) -> httpx.Response:
    content = data if data is not None else blank_pdf(pages)
    return await client.post(
        "/ocrpdf",
        files={"file": (f"{pages}.pdf", content)},
        headers={"X-Tenant-Id": tenant},
    )


async def post_batch(client: httpx.AsyncClient, tenant: str, *pages: int) -> httpx.Response:
    files = [("files", (f"{n}.pdf", blank_pdf(n))) for n in pages]
    return await client.post("/jobs", files=files, headers={"X-Tenant-Id": tenant})


async def tenant_jobs(services: Components, tenant: str) -> int:
    async with services.sessions() as session:
        count = await session.scalar(
            text("SELECT count(*) FROM jobs WHERE tenant = :t"), {"t": tenant}
        )
    return int(count or 0)


def assert_quota_refusal(response: httpx.Response, limit: str, *, names: str) -> int:
    """429 naming `limit` and the setting (`names`); returns its Retry-After."""
    assert response.status_code == 429, response.text
    body = response.json()
    assert body["error"] == "quota_exceeded", body
    assert body["limit"] == limit, body
    assert names in body["detail"], body
    retry_after = int(response.headers["Retry-After"])
    assert retry_after >= 1
    return retry_after


def accepted(response: httpx.Response) -> str:
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    return job_id


async def rendered(client: httpx.AsyncClient, response: httpx.Response) -> list[str]:
    """The accepted jobs, once rendered: what they store is on disk before a snapshot."""
    assert response.status_code == 202, response.text
    body = response.json()
    job_ids = [job["job_id"] for job in body["jobs"]] if "jobs" in body else [body["job_id"]]
    for job_id in job_ids:
        await wait_rendered(client, job_id)
    return job_ids


# ------------------------------------------------------------------ pages pending or in flight


async def test_pages_pending_limit_from_the_settings(
    client: httpx.AsyncClient, services: Components, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_settings(monkeypatch, services, tenant_max_pending_pages=5)
    await rendered(client, await post_pdf(client, "pages-a", 3))
    before = stored_paths(services)

    refused = await post_pdf(client, "pages-a", 3)

    retry = assert_quota_refusal(
        refused, "tenant_max_pending_pages", names="OCR_GATEWAY_TENANT_MAX_PENDING_PAGES"
    )
    assert retry == 30
    assert "has 3 pages pending" in refused.json()["detail"]
    assert stored_paths(services) - before == set(), "a refused upload left files behind"
    assert await tenant_jobs(services, "pages-a") == 1
    # What fits exactly is taken; another tenant has room of its own.
    await rendered(client, await post_pdf(client, "pages-a", 2))
    await rendered(client, await post_pdf(client, "pages-b", 5))


async def test_pages_pending_limit_from_the_tenant_row(
    client: httpx.AsyncClient, services: Components
) -> None:
    await set_tenant_limits(services, "pages-own", max_pending_pages=2)
    before = stored_paths(services)

    refused = await post_pdf(client, "pages-own", 3)

    assert_quota_refusal(refused, "tenant_max_pending_pages", names="the tenant's own limit")
    assert stored_paths(services) - before == set()
    assert await tenant_jobs(services, "pages-own") == 0
    job_id = accepted(await post_pdf(client, "pages-own", 2))
    # Rendered pages are still pending: the limit counts them until they are done.
    await wait_rendered(client, job_id)
    assert_quota_refusal(
        await post_pdf(client, "pages-own", 1),
        "tenant_max_pending_pages",
        names="the tenant's own limit",
    )


async def test_a_batch_over_the_pages_limit_is_refused_whole(
    client: httpx.AsyncClient, services: Components
) -> None:
    await set_tenant_limits(services, "batch-pages", max_pending_pages=4)
    before = stored_paths(services)

    refused = await post_batch(client, "batch-pages", 2, 3)

    assert_quota_refusal(refused, "tenant_max_pending_pages", names="adds 5")
    assert await tenant_jobs(services, "batch-pages") == 0
    assert stored_paths(services) - before == set(), "a refused batch left files behind"
    await rendered(client, await post_batch(client, "batch-pages", 1, 3))


# ------------------------------------------------------------------ uploads per minute


async def test_uploads_per_minute_from_the_settings(
    client: httpx.AsyncClient, services: Components, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_settings(monkeypatch, services, tenant_uploads_per_minute=2)
    await rendered(client, await post_pdf(client, "rate-a", 1))
    await rendered(client, await post_pdf(client, "rate-a", 1))
    before = stored_paths(services)

    refused = await post_pdf(client, "rate-a", 1)

    retry = assert_quota_refusal(
        refused, "tenant_uploads_per_minute", names="OCR_GATEWAY_TENANT_UPLOADS_PER_MINUTE"
    )
    assert 50 <= retry <= 60, "the oldest upload leaves the window a minute after it came"
    assert stored_paths(services) - before == set()
    assert await tenant_jobs(services, "rate-a") == 2
    await rendered(client, await post_pdf(client, "rate-b", 1))


async def test_uploads_per_minute_from_the_tenant_row_and_the_window_moves(
    client: httpx.AsyncClient, services: Components
) -> None:
    await set_tenant_limits(services, "rate-own", uploads_per_minute=1)
    job_id = accepted(await post_pdf(client, "rate-own", 1))
    await wait_rendered(client, job_id)
    # The upload was made 45 s ago: it leaves the window in about 15 s.
    async with services.sessions.begin() as session:
        await session.execute(
            text("UPDATE jobs SET created_at = now() - interval '45 seconds' WHERE job_id = :j"),
            {"j": uuid.UUID(job_id)},
        )

    refused = await post_pdf(client, "rate-own", 1)

    retry = assert_quota_refusal(
        refused, "tenant_uploads_per_minute", names="the tenant's own limit"
    )
    assert 14 <= retry <= 16
    async with services.sessions.begin() as session:
        await session.execute(
            text("UPDATE jobs SET created_at = now() - interval '61 seconds' WHERE job_id = :j"),
            {"j": uuid.UUID(job_id)},
        )
    await rendered(client, await post_pdf(client, "rate-own", 1))


async def test_each_file_of_a_batch_is_an_upload_and_a_batch_over_is_refused_whole(
    client: httpx.AsyncClient, services: Components
) -> None:
    await set_tenant_limits(services, "rate-batch", uploads_per_minute=3)
    await rendered(client, await post_batch(client, "rate-batch", 1, 1))
    before = stored_paths(services)

    refused = await post_batch(client, "rate-batch", 1, 2)

    retry = assert_quota_refusal(refused, "tenant_uploads_per_minute", names="adds 2")
    assert 50 <= retry <= 60
    assert await tenant_jobs(services, "rate-batch") == 2
    assert stored_paths(services) - before == set(), "a refused batch left files behind"
    await rendered(client, await post_pdf(client, "rate-batch", 1))


async def test_a_tenant_at_its_limit_is_refused_before_its_body_is_read(
    client: httpx.AsyncClient, services: Components
) -> None:
    """Over the upload size cap the answer would be 413 once read; 429 says it never was."""
    await set_tenant_limits(services, "rate-early", uploads_per_minute=1)
    await rendered(client, await post_pdf(client, "rate-early", 1))
    too_big = b"%PDF-1.4\n" + bytes(services.settings.max_upload_bytes + 1024)
    before = stored_paths(services)

    refused = await post_pdf(client, "rate-early", 1, data=too_big)

    assert_quota_refusal(refused, "tenant_uploads_per_minute", names="the tenant's own limit")
    assert stored_paths(services) - before == set()


# ------------------------------------------------------------------ bytes stored


async def files_bytes(services: Components, job_id: str) -> int:
    """The bytes of the job's page PNGs, as the store (local or S3) reports them."""
    total = 0
    for name in await job_names(services, job_id):
        if name.endswith(".png"):
            total += await services.store.size(f"{job_id}/{name}") or 0
    return total


async def stored_bytes(services: Components, job_id: str) -> int:
    async with services.sessions() as session:
        value = await session.scalar(
            text("SELECT stored_bytes FROM jobs WHERE job_id = :j"), {"j": uuid.UUID(job_id)}
        )
    return int(value or 0)


async def test_stored_bytes_are_the_page_images_and_their_limit_comes_from_the_tenant_row(
    client: httpx.AsyncClient, services: Components
) -> None:
    await set_tenant_limits(services, "bytes-own", max_stored_bytes=1)
    job_id = accepted(await post_pdf(client, "bytes-own", 2))
    await wait_rendered(client, job_id)
    assert await stored_bytes(services, job_id) == await files_bytes(services, job_id) > 0
    before = stored_paths(services)

    refused = await post_batch(client, "bytes-own", 1)

    assert_quota_refusal(refused, "tenant_max_stored_bytes", names="the tenant's own limit")
    assert str(await files_bytes(services, job_id)) in refused.json()["detail"]
    assert stored_paths(services) - before == set()
    # Deleting the job frees its bytes.
    response = await client.delete(f"/admin/delete/job/{job_id}")
    assert response.status_code == 200, response.text
    await rendered(client, await post_pdf(client, "bytes-own", 1))


async def test_stored_bytes_limit_from_the_settings(
    client: httpx.AsyncClient, services: Components, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = accepted(await post_pdf(client, "bytes-a", 1))
    await wait_rendered(client, job_id)
    size = await stored_bytes(services, job_id)
    use_settings(monkeypatch, services, tenant_max_stored_bytes=size)
    before = stored_paths(services)

    refused = await post_pdf(client, "bytes-a", 1)

    assert_quota_refusal(
        refused, "tenant_max_stored_bytes", names="OCR_GATEWAY_TENANT_MAX_STORED_BYTES"
    )
    assert stored_paths(services) - before == set()
    assert await tenant_jobs(services, "bytes-a") == 1
    await rendered(client, await post_pdf(client, "bytes-b", 1))


# ------------------------------------------------------------------ concurrency


async def test_concurrent_uploads_at_the_limit_cannot_overshoot(
    client: httpx.AsyncClient, services: Components
) -> None:
    await set_tenant_limits(services, "race", max_pending_pages=4, uploads_per_minute=100)
    before = stored_paths(services)

    responses = await asyncio.gather(*(post_pdf(client, "race", 1) for _ in range(10)))

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [202] * 4 + [429] * 6, [r.text for r in responses]
    assert await tenant_jobs(services, "race") == 4
    # Once the accepted jobs are rendered, their page folders are all that is left.
    job_ids = {r.json()["job_id"] for r in responses if r.status_code == 202}
    for job_id in job_ids:
        await wait_rendered(client, job_id)
    files_dir = Path(services.settings.files_dir)
    left = {p for p in stored_paths(services) - before if p.parent in (files_dir, files_dir.parent)}
    assert {p.name for p in left if p.parent == files_dir} == job_ids
    temp_left = {
        p for p in stored_paths(services) - before if p.is_relative_to(services.settings.temp_dir)
    }
    assert temp_left == set(), temp_left
