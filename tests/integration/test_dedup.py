"""Duplicate uploads: the same tenant sending the same bytes with the same options gets its live
job back (200, `deduplicated: true`), keeping nothing of the second upload; a change of bytes,
options or tenant, `dedup=false`, a deleted, failed or cancelled job all make a new one. Two
identical uploads at once, over real HTTP, make one job.

Through the real app, database, inspect pool and render pool, with real sample files.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from aio_pika.abc import AbstractChannel
from fastapi import FastAPI

from ocr_gateway.components import Components
from tests.integration.test_bad_input import count_rows, stored_paths
from tests.support.documents import sample
from tests.support.http import wait_rendered
from tests.support.results import send_result
from tests.support.tcp import served
from tests.support.waiting import wait_until

PDF = "pdflatex-4-pages.pdf"
OTHER_PDF = "multicolumn.pdf"


def pdf_bytes(name: str = PDF) -> bytes:
    return sample(name).read_bytes()


async def send(
    client: httpx.AsyncClient,
    content: bytes,
    *,
    route: str = "/ocrpdf",
    name: str = PDF,
    params: dict[str, str] | None = None,
    data: dict[str, str] | None = None,
    tenant: str | None = None,
) -> httpx.Response:
    headers = {"X-Tenant-Id": tenant} if tenant else {}
    return await client.post(
        route, files={"file": (name, content)}, params=params, data=data, headers=headers
    )


async def wait_no_uploads(services: Components) -> None:
    """Until temp/ holds no upload: every render has finished and removed its file."""

    async def none_left() -> bool:
        return not list(services.settings.temp_dir.glob("*.upload"))

    await wait_until(none_left, 30, what="no upload left in temp/")


def body_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_the_same_pdf_twice_answers_the_first_job_with_200(
    client: httpx.AsyncClient, services: Components
) -> None:
    first = body_of(await send(client, pdf_bytes()), 202)
    assert first["deduplicated"] is False
    await wait_rendered(client, first["job_id"])
    await wait_no_uploads(services)
    before = stored_paths(services)
    second = body_of(await send(client, pdf_bytes(), name="renamed.pdf"), 200)
    assert second["deduplicated"] is True
    assert second["job_id"] == first["job_id"]
    # The answer is the existing job as it is: its name, not the duplicate's.
    assert second["filename"] == PDF
    assert second["total_page_number"] == 4
    assert await count_rows(services, "jobs") == 1
    assert await count_rows(services, "pages") == 4
    assert stored_paths(services) == before, "the duplicate left a file behind"
    assert services.renderer.rendering_job_ids == []


async def test_an_image_twice_and_the_same_file_through_the_batch_route(
    client: httpx.AsyncClient, services: Components
) -> None:
    image = sample("smile.png").read_bytes()
    first = body_of(await send(client, image, route="/ocrimage", name="smile.png"), 202)
    again = body_of(await send(client, image, route="/ocrimage", name="smile.png"), 200)
    assert again["job_id"] == first["job_id"]
    # POST /jobs makes the same kind of job, file by file: the image is known, the PDF new.
    response = await client.post(
        "/jobs", files=[("files", ("smile.png", image)), ("files", (PDF, pdf_bytes()))]
    )
    jobs = body_of(response, 202)["jobs"]
    assert [job["deduplicated"] for job in jobs] == [True, False]
    assert jobs[0]["job_id"] == first["job_id"]
    await wait_rendered(client, jobs[1]["job_id"])
    # Every file known: 200.
    response = await client.post(
        "/jobs", files=[("files", (PDF, pdf_bytes())), ("files", ("smile.png", image))]
    )
    again_jobs = body_of(response, 200)["jobs"]
    assert [job["job_id"] for job in again_jobs] == [jobs[1]["job_id"], first["job_id"]]
    assert all(job["deduplicated"] for job in again_jobs)
    assert await count_rows(services, "jobs") == 2


async def test_two_identical_files_in_one_batch_are_one_job(
    client: httpx.AsyncClient, services: Components
) -> None:
    response = await client.post(
        "/jobs", files=[("files", ("a.pdf", pdf_bytes())), ("files", ("b.pdf", pdf_bytes()))]
    )
    jobs = body_of(response, 202)["jobs"]
    assert jobs[0]["job_id"] == jobs[1]["job_id"]
    assert [job["deduplicated"] for job in jobs] == [False, True]
    await wait_rendered(client, jobs[0]["job_id"])
    assert await count_rows(services, "jobs") == 1
    await wait_no_uploads(services)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"params": {"text_layer": "off"}}, {"params": {"text_layer": "auto"}}),
        ({"data": {"text_layer": "auto"}}, {"params": {"text_layer": "off"}}),
    ],
    ids=["query", "form-field"],
)
async def test_other_options_make_a_new_job(
    client: httpx.AsyncClient, first: dict[str, Any], second: dict[str, Any]
) -> None:
    one = body_of(await send(client, pdf_bytes(), **first), 202)
    two = body_of(await send(client, pdf_bytes(), **second), 202)
    assert two["job_id"] != one["job_id"]
    assert two["deduplicated"] is False
    # The same options as the first again: the first job.
    three = body_of(await send(client, pdf_bytes(), **first), 200)
    assert three["job_id"] == one["job_id"]


async def test_other_bytes_make_a_new_job(client: httpx.AsyncClient) -> None:
    one = body_of(await send(client, pdf_bytes()), 202)
    two = body_of(await send(client, pdf_bytes(OTHER_PDF), name=OTHER_PDF), 202)
    assert two["job_id"] != one["job_id"]


@pytest.mark.parametrize("where", ["params", "data"])
async def test_dedup_false_makes_a_new_job_and_is_never_matched(
    client: httpx.AsyncClient, services: Components, where: str
) -> None:
    one = body_of(await send(client, pdf_bytes()), 202)
    option = {"dedup": "false"}
    two = body_of(
        await send(
            client,
            pdf_bytes(),
            params=option if where == "params" else None,
            data=option if where == "data" else None,
        ),
        202,
    )
    assert two["job_id"] != one["job_id"]
    async with services.sessions() as session:
        from sqlalchemy import text

        keys = (await session.execute(text("SELECT job_id, dedup_key FROM jobs"))).all()
    stored = {str(row.job_id): row.dedup_key for row in keys}
    assert stored[two["job_id"]] is None
    assert stored[one["job_id"]] is not None and len(stored[one["job_id"]]) == 32
    three = body_of(await send(client, pdf_bytes()), 200)
    assert three["job_id"] == one["job_id"]


async def test_a_bad_dedup_or_text_layer_value_is_a_422_that_keeps_nothing(
    client: httpx.AsyncClient, services: Components
) -> None:
    before = stored_paths(services)
    for params, data in (
        ({"dedup": "maybe"}, None),
        (None, {"text_layer": "always"}),
        ({"text_layer": "on"}, None),
    ):
        response = await send(client, pdf_bytes(), params=params, data=data)
        body = body_of(response, 422)
        assert body["error"] == "invalid_field", body
        assert "dedup" in body["detail"] or "text_layer" in body["detail"], body
    assert await count_rows(services, "jobs") == 0
    assert stored_paths(services) == before


async def test_deleting_the_job_forgets_the_hash(client: httpx.AsyncClient) -> None:
    one = body_of(await send(client, pdf_bytes()), 202)
    await wait_rendered(client, one["job_id"])
    deleted = await client.delete(f"/jobs/{one['job_id']}")
    assert deleted.status_code == 200, deleted.text
    two = body_of(await send(client, pdf_bytes()), 202)
    assert two["job_id"] != one["job_id"]
    assert two["deduplicated"] is False


async def test_a_failed_job_is_not_reused(
    client: httpx.AsyncClient, channel: AbstractChannel, services: Components
) -> None:
    one = body_of(await send(client, pdf_bytes()), 202)
    await wait_rendered(client, one["job_id"])
    # Every page fails, as a worker reports it: the job fails.
    for number in range(1, 5):
        await send_result(
            channel,
            services.settings.results_queue,
            {
                "job_id": one["job_id"],
                "page_number": number,
                "status": "failed",
                "error": "unreadable",
            },
        )

    async def failed() -> bool:
        response = await client.get(f"/jobs/{one['job_id']}")
        return bool(response.json()["status"] == "failed")

    await wait_until(failed, 30, what="the job to fail")
    two = body_of(await send(client, pdf_bytes()), 202)
    assert two["job_id"] != one["job_id"]
    # The new job is the live one now: a third upload gets it.
    three = body_of(await send(client, pdf_bytes()), 200)
    assert three["job_id"] == two["job_id"]


async def test_a_cancelled_job_is_not_reused(client: httpx.AsyncClient) -> None:
    one = body_of(await send(client, pdf_bytes()), 202)
    await wait_rendered(client, one["job_id"])
    cancelled = await client.post(f"/jobs/{one['job_id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    two = body_of(await send(client, pdf_bytes()), 202)
    assert two["job_id"] != one["job_id"]


async def test_another_tenant_gets_a_job_of_its_own(client: httpx.AsyncClient) -> None:
    mine = body_of(await send(client, pdf_bytes()), 202)
    theirs = body_of(await send(client, pdf_bytes(), tenant="acme"), 202)
    assert theirs["job_id"] != mine["job_id"]
    assert theirs["tenant"] == "acme"
    again = body_of(await send(client, pdf_bytes(), tenant="acme"), 200)
    assert again["job_id"] == theirs["job_id"]


async def test_two_identical_uploads_at_once_make_one_job(
    app: FastAPI, services: Components
) -> None:
    """Over real HTTP, on a real socket: six identical uploads race; one job is made, the
    others answer it, and none of their files is kept."""
    content = pdf_bytes()
    temp = services.settings.temp_dir
    before = set(temp.glob("*"))
    async with (
        served(app) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/api/v1", timeout=60) as http,
    ):
        responses = await asyncio.gather(
            *(http.post("/ocrpdf", files={"file": (PDF, content)}) for _ in range(6))
        )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] * 5 + [202], [r.text for r in responses]
    job_ids = {response.json()["job_id"] for response in responses}
    assert len(job_ids) == 1
    assert await count_rows(services, "jobs") == 1
    (job_id,) = job_ids

    async def only_its_files() -> bool:
        return all(job_id in path.name for path in set(temp.glob("*")) - before)

    await wait_until(only_its_files, 30, what="the duplicates' temp files to go")


async def test_the_unique_index_refuses_a_second_live_job_with_the_key(
    services: Components,
) -> None:
    """The database itself holds one live job per tenant and key, whatever inserts it."""
    import sqlalchemy.exc
    from sqlalchemy import text

    insert = text(
        "INSERT INTO jobs (job_id, filename, media_type, status, total_page_number, dedup_key)"
        " VALUES (gen_random_uuid(), 'x.pdf', 'application/pdf', :status, 1, :key)"
    )
    key = b"k" * 32
    async with services.sessions.begin() as session:
        await session.execute(insert, {"status": "failed", "key": key})
        await session.execute(insert, {"status": "pending", "key": key})
    with pytest.raises(sqlalchemy.exc.IntegrityError, match="uq_jobs_tenant_dedup"):
        async with services.sessions.begin() as session:
            await session.execute(insert, {"status": "completed", "key": key})


async def test_a_duplicate_is_not_charged_to_the_quotas(
    client: httpx.AsyncClient, services: Components
) -> None:
    """A tenant without room for the pages again gets its job again: the duplicate adds
    none. (A tenant already at a limit is refused before its body is read, duplicate or not.)"""
    from tests.integration.test_quotas import set_tenant_limits

    await set_tenant_limits(services, "full", max_pending_pages=6)
    first = body_of(await send(client, pdf_bytes(), tenant="full"), 202)
    again = body_of(await send(client, pdf_bytes(), tenant="full"), 200)
    assert again["job_id"] == first["job_id"]
    # A new upload would add 4 pages more: refused, as before.
    refused = await send(client, pdf_bytes(), tenant="full", params={"dedup": "false"})
    assert refused.status_code == 429, refused.text
    assert await count_rows(services, "jobs") == 1
