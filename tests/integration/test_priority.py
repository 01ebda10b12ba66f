"""Job priorities 0-9: set at upload (`priority` form field) or by `PUT
/admin/jobs/{job_id}/priority`, claimed highest first, and published with their AMQP priority
into the pages queue (x-max-priority 10), so that they overtake pages already in the broker."""

from __future__ import annotations

import uuid
from pathlib import Path

import aio_pika
import httpx
import orjson
from sqlalchemy import text

from ocr_gateway.components import Components
from ocr_gateway.dispatch import repository as repo
from ocr_gateway.messaging.amqp import queue_depth
from tests.support.documents import blank_pdf
from tests.support.gateway import isolated_gateway, seed_pages
from tests.support.http import wait_rendered
from tests.support.waiting import wait_until


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
    return int(job), list(pages or [])


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


async def test_claims_take_the_highest_priority_first_each_shared_between_tenants(
    client: httpx.AsyncClient, services: Components
) -> None:
    target = (services.storage, services.sessions)
    (low_a,) = await seed_pages(target, 1, 20, tenant="A")
    (mid_b,) = await seed_pages(target, 1, 4, tenant="B")
    (top_a,) = await seed_pages(target, 1, 3, tenant="A")
    (top_b,) = await seed_pages(target, 1, 3, tenant="B")
    for job, priority in ((mid_b, 5), (top_a, 9), (top_b, 9)):
        answer = await client.put(f"/admin/jobs/{job}/priority", json={"priority": priority})
        assert answer.status_code == 200

    async with services.sessions() as session:
        await repo.add_dispatch_request(session)
        claimed = await repo.claim_pages(session, limit=12, lease_s=60)
        await session.rollback()

    order = [(page.priority, page.tenant) for page in claimed]
    # Priority 9 first, A and B taking turns; then 5; then the oldest job's pages at 0.
    assert sorted(order[:6]) == [(9, "A")] * 3 + [(9, "B")] * 3
    assert "".join(tenant for _, tenant in order[:6]) in ("ABABAB", "BABABA")
    assert order[6:10] == [(5, "B")] * 4
    assert order[10:] == [(0, "A")] * 2
    assert {page.job_id for page in claimed[10:]} == {low_a}


async def test_a_priority_job_overtakes_a_backlog_already_in_the_broker(tmp_path: Path) -> None:
    """5,000 pages of priority 0 published first; a job of priority 9 started after them; a
    consumer that starts after both gets the priority 9 job's pages first."""
    async with isolated_gateway(tmp_path, queue_high_water=10_000) as gateway:
        services, client = gateway.services, gateway.client
        settings = services.settings
        backlog = await seed_pages(gateway, 2, 2500)
        for job in backlog:
            await services.control.start_job(job)

        async def count(jobs: list[uuid.UUID], status: str) -> int:
            async with services.sessions() as session:
                value = await session.scalar(
                    text("SELECT count(*) FROM pages WHERE job_id = ANY(:j) AND status = :s"),
                    {"j": jobs, "s": status},
                )
            return int(value or 0)

        async def backlog_queued() -> bool:
            return await count(backlog, "queued") == 5000

        await wait_until(backlog_queued, timeout=120, what="the 5,000-page backlog in the broker")
        (urgent,) = await seed_pages(gateway, 1, 3)
        answer = await client.put(f"/admin/jobs/{urgent}/priority", json={"priority": 9})
        assert answer.json()["pending_pages"] == 3
        await services.control.start_job(urgent)

        async def urgent_queued() -> bool:
            return await count([urgent], "queued") == 3

        await wait_until(urgent_queued, timeout=30, what="the urgent job in the broker")
        connection = await aio_pika.connect(settings.rabbitmq_url.get_secret_value())
        async with connection:
            channel = await connection.channel()
            assert await queue_depth(channel, settings.pages_queue) == 5003
            queue = await channel.declare_queue(settings.pages_queue, passive=True)
            first = []
            for _ in range(4):
                message = await queue.get(no_ack=True, fail=True, timeout=5)
                first.append((orjson.loads(message.body)["job_id"], message.priority))
    assert first[:3] == [(str(urgent), 9)] * 3, first
    # Then the backlog, in its order (published without a priority: the queue's 0).
    assert first[3][0] == str(backlog[0]) and not first[3][1]


async def test_the_upload_field_sets_the_priority_and_a_duplicate_keeps_the_first(
    client: httpx.AsyncClient, services: Components
) -> None:
    pdf = blank_pdf(2)
    made = await client.post("/ocrpdf", files={"file": ("a.pdf", pdf)}, data={"priority": "7"})
    assert made.status_code == 202, made.text
    job_id = made.json()["job_id"]
    await wait_rendered(client, job_id)
    assert await priorities(services, uuid.UUID(job_id)) == (7, [7])

    again = await client.post("/ocrpdf", files={"file": ("a.pdf", pdf)}, data={"priority": "2"})
    assert again.status_code == 200 and again.json()["deduplicated"]
    assert again.json()["job_id"] == job_id
    assert (await priorities(services, uuid.UUID(job_id)))[0] == 7

    plain = await client.post("/ocrpdf", files={"file": ("b.pdf", blank_pdf(1))})
    assert plain.status_code == 202
    assert (await priorities(services, uuid.UUID(plain.json()["job_id"])))[0] == 0

    for bad in ("10", "-1", "high", "1.5", "٣"):
        refused = await client.post(
            "/ocrpdf", files={"file": ("c.pdf", blank_pdf(1))}, data={"priority": bad}
        )
        assert refused.status_code == 422, (bad, refused.text)
        assert "priority" in refused.text
    async with services.sessions() as session:
        jobs = await session.scalar(text("SELECT count(*) FROM jobs"))
    assert jobs == 2, "a refused upload leaves no job"

    # The batch route takes the field too, for each of its jobs.
    made = await client.post(
        "/jobs",
        files=[("files", ("d.pdf", blank_pdf(3))), ("files", ("e.pdf", blank_pdf(4)))],
        data={"priority": "3"},
    )
    assert made.status_code == 202, made.text
    for job in made.json()["jobs"]:
        assert (await priorities(services, uuid.UUID(job["job_id"])))[0] == 3
    refused = await client.post(
        "/jobs", files=[("files", ("f.pdf", blank_pdf(5)))], data={"priority": "11"}
    )
    assert refused.status_code == 422
