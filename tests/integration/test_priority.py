"""Job priorities 0-9: set at upload (`priority` form field) or by `PUT
/admin/jobs/{job_id}/priority`, claimed highest first, and published with their AMQP priority
into the pages queue (x-max-priority 10), so that they overtake pages already in the broker."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import text

from ocr_gateway.components import Components
from tests.support.gateway import seed_pages


async def priorities(services: Components, job_id: uuid.UUID) -> tuple[int, list[int]]:
    """The job's priority, and the distinct priorities of its pages."""
    async with services.sessions() as session:
        job = await session.scalar(
            text("SELECT priority FROM jobs WHERE job_id = :j"), {"j": job_id}
        )
        pages = await session.scalar(
            text("SELECT array_agg(DISTINCT priority) FROM pages WHERE job_id = :j"),
            {"j": job_id},
        )
    return int(job), list(pages)


async def test_put_priority_changes_the_job_and_its_pending_pages(
    client: httpx.AsyncClient, services: Components
) -> None:
    (job,) = await seed_pages((services.storage, services.sessions), 1, 4)
    async with services.sessions.begin() as session:
        await session.execute(
            text("UPDATE pages SET status = 'queued' WHERE job_id = :j AND page_number = 1"),
            {"j": job},
        )

    answer = await client.put(f"/admin/jobs/{job}/priority", json={"priority": 7})

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"job_id": str(job), "priority": 7, "pending_pages": 3}
    async with services.sessions() as session:
        rows = (
            await session.execute(
                text("SELECT page_number, priority FROM pages WHERE job_id = :j ORDER BY 1"),
                {"j": job},
            )
        ).all()
    # The page already in the broker keeps the priority it was published with.
    assert [tuple(row) for row in rows] == [(1, 0), (2, 7), (3, 7), (4, 7)]
    assert (await priorities(services, job))[0] == 7
    assert (await client.get(f"/admin/job/{job}")).status_code == 200


async def test_put_priority_refuses_unknown_jobs_bad_values_and_tasks(
    client: httpx.AsyncClient, services: Components
) -> None:
    (job,) = await seed_pages((services.storage, services.sessions), 1, 1)
    missing = await client.put(f"/admin/jobs/{uuid.uuid4()}/priority", json={"priority": 1})
    assert missing.status_code == 404
    assert missing.json()["error"]
    for body in (
        {"priority": 10},
        {"priority": -1},
        {"priority": "5"},
        {"priority": 2.5},
        {"priority": True},
        {"priority": None},
        {},
        {"priority": 1, "other": 2},
    ):
        refused = await client.put(f"/admin/jobs/{job}/priority", json=body)
        assert refused.status_code == 422, (body, refused.text)
        assert refused.json()["error"]
    not_a_uuid = await client.put("/admin/jobs/nope/priority", json={"priority": 1})
    assert not_a_uuid.status_code == 422
    assert await priorities(services, job) == (0, [0]), "nothing changed"

    async with services.sessions.begin() as session:
        await session.execute(text("UPDATE jobs SET priority = 10 WHERE job_id = :j"), {"j": job})
    task = await client.put(f"/admin/jobs/{job}/priority", json={"priority": 9})
    assert task.status_code == 409
    assert (await priorities(services, job))[0] == 10
