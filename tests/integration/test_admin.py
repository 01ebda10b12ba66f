"""Admin routes: listing, details, deletes, and the API key."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aio_pika.abc import AbstractChannel
from fastapi import FastAPI
from sqlalchemy import text

from ocr_gateway.app import create_app
from ocr_gateway.components import Components
from ocr_gateway.messaging.amqp import queue_depth
from ocr_gateway.storage.keys import job_of
from tests.support.documents import blank_pdf
from tests.support.gateway import make_settings
from tests.support.http import job_detail, upload, wait_rendered
from tests.support.routes import schema_operation_count
from tests.support.stored import job_names
from tests.support.waiting import wait_until


async def test_list_jobs_newest_first_with_cursor_and_offset(client: httpx.AsyncClient) -> None:
    ids = []
    for index in range(5):
        accepted = await upload(client, f"doc-{index}.pdf", blank_pdf(1))
        ids.append(accepted["job_id"])
    newest_first = list(reversed(ids))

    first = (await client.get("/admin/jobs", params={"limit": 2})).json()
    assert [item["job_id"] for item in first["items"]] == newest_first[:2]
    assert first["next_cursor"]
    second = (
        await client.get("/admin/jobs", params={"limit": 2, "cursor": first["next_cursor"]})
    ).json()
    assert [item["job_id"] for item in second["items"]] == newest_first[2:4]
    third = (
        await client.get("/admin/jobs", params={"limit": 2, "cursor": second["next_cursor"]})
    ).json()
    assert [item["job_id"] for item in third["items"]] == newest_first[4:]
    assert third["next_cursor"] is None

    by_offset = (await client.get("/admin/jobs", params={"limit": 2, "offset": 3})).json()
    assert [item["job_id"] for item in by_offset["items"]] == newest_first[3:5]

    bad_cursor = await client.get("/admin/jobs", params={"cursor": "garbage"})
    assert bad_cursor.status_code == 400
    assert bad_cursor.json()["error"] == "bad_request"
    too_many = await client.get("/admin/jobs", params={"limit": 100000})
    assert too_many.status_code == 422
    for job_id in ids:
        await wait_rendered(client, job_id)


async def test_delete_page_excludes_it_and_completes_the_job_without_it(
    client: httpx.AsyncClient, services: Components
) -> None:
    accepted = await upload(client, "three.pdf", blank_pdf(3))
    job_id = accepted["job_id"]
    job = await wait_rendered(client, job_id)
    page_two = job["pages"][1]["path"]
    assert await services.store.exists(page_two)

    response = await client.delete(f"/admin/delete/job/{job_id}/page/2")
    assert response.status_code == 200
    assert response.json() == {"deleted": "page", "job_id": job_id, "page_number": 2}
    assert not await services.store.exists(page_two)
    job = await job_detail(client, job_id)
    assert job["excluded_pages"] == [2]
    assert [p["page_number"] for p in job["pages"]] == [1, 3]
    again = await client.delete(f"/admin/delete/job/{job_id}/page/2")
    assert again.status_code == 404

    async with services.sessions.begin() as session:
        await session.execute(
            text("UPDATE pages SET status = 'done', text = 'x' WHERE job_id = :j"),
            {"j": job_id},
        )
    # The next counter refresh (a result, a delete) sees two of two live pages done.
    await client.delete(f"/admin/delete/job/{job_id}/page/3")
    job = await job_detail(client, job_id)
    assert job["excluded_pages"] == [2, 3]
    assert job["completed_pages"] == 1
    assert job["status"] == "completed"


async def test_delete_job_removes_folder_and_rows(
    client: httpx.AsyncClient, services: Components
) -> None:
    accepted = await upload(client, "two.pdf", blank_pdf(2))
    job_id = accepted["job_id"]
    await wait_rendered(client, job_id)
    assert await job_names(services, job_id) == ["1.png", "2.png"]

    response = await client.delete(f"/admin/delete/job/{job_id}")
    assert response.status_code == 200
    assert await job_names(services, job_id) == []
    assert (await client.get(f"/admin/job/{job_id}")).status_code == 404
    assert (await client.delete(f"/admin/delete/job/{job_id}")).status_code == 404
    async with services.sessions() as session:
        assert await session.scalar(text("SELECT count(*) FROM pages")) == 0


async def test_delete_all_jobs_clears_files_rows_and_queue(
    client: httpx.AsyncClient, services: Components, channel: AbstractChannel
) -> None:
    ids = [(await upload(client, f"d{i}.pdf", blank_pdf(2)))["job_id"] for i in range(3)]
    for job_id in ids:
        await wait_rendered(client, job_id)
    assert (await client.post(f"/admin/start/{ids[0]}")).status_code == 202

    async def queued() -> bool:
        return await queue_depth(channel, services.settings.pages_queue) == 2

    await wait_until(queued)
    response = await client.delete("/admin/delete/jobs")
    assert response.status_code == 202

    async def all_gone() -> bool:
        async with services.sessions() as session:
            jobs = await session.scalar(text("SELECT count(*) FROM jobs"))
        depth = await queue_depth(channel, services.settings.pages_queue)
        return jobs == 0 and depth == 0

    await wait_until(all_gone)
    # images/ holds /images uploads, which are no jobs: deleting every job leaves them.
    leftovers = [key for key in await services.store.list_keys("") if job_of(key) is not None]
    assert leftovers == []


@pytest.fixture
async def keyed_client(services: Components, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A second app process on the same database and queues, with an admin key set."""
    settings = make_settings(
        tmp_path,
        database_url=services.settings.database_url,
        pages_queue=services.settings.pages_queue,
        results_queue=services.settings.results_queue,
        admin_api_key="s3cret-key",
    )
    keyed: FastAPI = create_app(settings)
    async with keyed.router.lifespan_context(keyed):
        transport = httpx.ASGITransport(app=keyed)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway/api/v1") as http:
            yield http


ADMIN_CALLS = [
    ("GET", "/admin/jobs"),
    ("GET", "/admin/job/00000000-0000-0000-0000-000000000000"),
    ("POST", "/admin/start"),
    ("POST", "/admin/start/00000000-0000-0000-0000-000000000000"),
    ("POST", "/admin/start/00000000-0000-0000-0000-000000000000/page/1"),
    ("POST", "/admin/stop"),
    ("DELETE", "/admin/delete/job/00000000-0000-0000-0000-000000000000/page/1"),
    ("DELETE", "/admin/delete/job/00000000-0000-0000-0000-000000000000"),
    ("DELETE", "/admin/delete/jobs"),
    ("DELETE", "/admin/delete/queue"),
]


async def test_admin_routes_need_the_key_when_one_is_set(
    keyed_client: httpx.AsyncClient,
) -> None:
    for method, path in ADMIN_CALLS:
        for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}):
            response = await keyed_client.request(method, path, headers=headers)
            assert response.status_code == 401, (method, path, headers)
            assert response.json()["error"] == "unauthorized"
    ok = await keyed_client.get("/admin/jobs", headers={"X-API-Key": "s3cret-key"})
    assert ok.status_code == 200
    health = await keyed_client.get("/health")
    assert health.status_code == 200, "health needs no key"


def test_openapi_has_operation_ids_and_response_models(app: FastAPI) -> None:
    schema = app.openapi()
    operations = [
        op for path in schema["paths"].values() for op in path.values() if isinstance(op, dict)
    ]
    assert len(operations) == schema_operation_count(app)
    ids = [op["operationId"] for op in operations]
    assert len(set(ids)) == len(ids)
    assert all("__" not in op_id for op_id in ids), ids
    for op in operations:
        success = [code for code in op["responses"] if code.startswith("2")]
        content = op["responses"][success[0]]["content"]
        if "application/json" not in content or op["operationId"] == "get_job_result":
            # An event stream, or files: each declared with its media type.
            assert all(
                kind != "application/json" or "schema" in spec for kind, spec in content.items()
            ), op["operationId"]
            continue
        assert "$ref" in content["application/json"]["schema"], op["operationId"]
    upload_body = schema["paths"]["/api/v1/ocrpdf"]["post"]["requestBody"]["content"]
    assert "file" in upload_body["multipart/form-data"]["schema"]["properties"]


async def test_cors_is_closed_by_default_and_opens_to_configured_origins(
    client: httpx.AsyncClient, services: Components, tmp_path: Path
) -> None:
    preflight = {
        "Origin": "https://ui.example",
        "Access-Control-Request-Method": "POST",
    }
    closed = await client.options("/ocrpdf", headers=preflight)
    assert "access-control-allow-origin" not in closed.headers

    opened_app = create_app(
        make_settings(
            tmp_path,
            database_url=services.settings.database_url,
            cors_origins=["https://ui.example"],
        )
    )
    # A preflight is answered by the CORS middleware itself; no lifespan is needed for it.
    transport = httpx.ASGITransport(app=opened_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway/api/v1") as http:
        allowed = await http.options("/ocrpdf", headers=preflight)
        other = await http.options(
            "/ocrpdf", headers={**preflight, "Origin": "https://evil.example"}
        )
    assert allowed.headers["access-control-allow-origin"] == "https://ui.example"
    assert "access-control-allow-origin" not in other.headers
