"""Start, stop and purge: no page is lost, none is stuck half-way, none is sent twice."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from pathlib import Path

import httpx
import orjson
from aio_pika.abc import AbstractChannel
from sqlalchemy import text

from ocr_gateway.components import Components
from ocr_gateway.messaging.amqp import queue_depth
from tests.support.documents import blank_pdf
from tests.support.gateway import Gateway, drain, isolated_gateway, page_counts, seed_pages
from tests.support.http import job_detail, upload, wait_rendered
from tests.support.proxy import FaultProxy
from tests.support.stored import page_numbers
from tests.support.waiting import wait_until


async def _page_counts(services: Components) -> Counter[str]:
    async with services.sessions() as session:
        rows = (
            await session.execute(text("SELECT status, count(*) FROM pages GROUP BY status"))
        ).all()
    return Counter({row[0]: row[1] for row in rows})


async def _upload_pages(client: httpx.AsyncClient, jobs: int, pages: int) -> list[str]:
    ids = []
    for index in range(jobs):
        accepted = await upload(client, f"batch-{index}.pdf", blank_pdf(pages))
        ids.append(accepted["job_id"])
    for job_id in ids:
        await wait_rendered(client, job_id)
    return ids


# The stop lands when the consumer has taken HOLD_AT pages; by then the broker has had at most
# HOLD_AT + PREFETCH + HIGH_WATER of the 600 pages, whatever the speed of publishing.
HIGH_WATER = 100
HOLD_AT = 50
PREFETCH = 50


async def test_stop_mid_publish_loses_nothing_and_restart_sends_exactly_the_rest(
    tmp_path: Path, channel: AbstractChannel
) -> None:
    """The test holds the timing rather than hoping for it (publishing once sent all 600 pages
    before a stop given after the first 50 could land): the high-water mark keeps publishing at
    most HIGH_WATER pages ahead of a slow consumer, and the consumer holds the broker link when
    it has taken HOLD_AT pages, so the stop lands with pages still pending and the publishes
    under way held unconfirmed."""
    link = FaultProxy("127.0.0.1", 5672)
    await link.start()
    try:
        # A publish held through the stop must still be confirmed, not time out.
        async with isolated_gateway(
            tmp_path, amqp_port=link.port, publish_timeout_s=30.0, queue_high_water=HIGH_WATER
        ) as gateway:
            await _stop_mid_publish_then_restart(gateway, link, channel)
    finally:
        await link.close()


async def _stop_mid_publish_then_restart(
    gateway: Gateway, link: FaultProxy, channel: AbstractChannel
) -> None:
    client, services = gateway.client, gateway.services
    total = 4 * 150
    await _upload_pages(client, jobs=4, pages=150)
    await channel.set_qos(prefetch_count=PREFETCH)
    queue = await channel.declare_queue(services.settings.pages_queue, passive=True)
    received: list[tuple[str, int]] = []
    holding = asyncio.Event()

    async def consume() -> None:
        async with queue.iterator() as messages:
            async for message in messages:
                body = orjson.loads(message.body)
                received.append((body["job_id"], body["page_number"]))
                await message.ack()
                if len(received) == HOLD_AT:
                    link.hold()
                    holding.set()
                await asyncio.sleep(0.002)  # a consumer slower than the publishers

    consumer = asyncio.create_task(consume())
    try:
        assert (await client.post("/admin/start")).status_code == 202
        await asyncio.wait_for(holding.wait(), 60)
        stop = await client.post("/admin/stop")
        assert stop.status_code == 202
        link.release()

        async def settled() -> bool:
            return (await _page_counts(services))["publishing"] == 0

        await wait_until(settled)
        counts = await _page_counts(services)
        assert counts["pending"] + counts["queued"] == total, counts
        assert counts["pending"] >= total - HOLD_AT - PREFETCH - HIGH_WATER, counts
        assert counts["pending"] > 0, "the stop came after everything was sent"

        await _wait_received(received, counts["queued"])
        assert len(received) == counts["queued"], "every queued page, and only those, was sent"
        first_run = set(received)

        assert (await client.post("/admin/start")).status_code == 202

        async def all_queued() -> bool:
            return (await _page_counts(services))["queued"] == total

        await wait_until(all_queued)
        await _wait_received(received, total)
    finally:
        link.release()
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
    assert len(received) == total, "no page sent twice"
    assert len(set(received)) == total, "every page sent once"
    assert first_run < set(received)


async def _wait_received(received: list[tuple[str, int]], expected: int) -> None:
    """Wait for the consumer to take `expected` messages, then a moment more for any extra."""

    async def enough() -> bool:
        return len(received) >= expected

    await wait_until(enough)
    await asyncio.sleep(1.0)


async def test_start_single_page_and_conflicts(
    client: httpx.AsyncClient, services: Components, channel: AbstractChannel
) -> None:
    (job_id,) = await _upload_pages(client, jobs=1, pages=3)
    response = await client.post(f"/admin/start/{job_id}/page/2")
    assert response.status_code == 202
    assert response.json() == {
        "action": "start",
        "scope": "page",
        "job_id": job_id,
        "page_number": 2,
        "pending_pages": 1,
    }

    async def page_two_queued() -> bool:
        pages = (await job_detail(client, job_id))["pages"]
        return [p["status"] for p in pages] == ["pending", "queued", "pending"]

    await wait_until(page_two_queued)
    bodies = await drain(channel, services.settings.pages_queue)
    assert [orjson.loads(b)["page_number"] for b in bodies] == [2]

    again = await client.post(f"/admin/start/{job_id}/page/2")
    assert again.status_code == 409
    assert again.json()["error"] == "conflict"
    missing_page = await client.post(f"/admin/start/{job_id}/page/9")
    assert missing_page.status_code == 404
    missing_job = await client.post("/admin/start/00000000-0000-0000-0000-000000000000")
    assert missing_job.status_code == 404
    assert missing_job.json()["error"] == "not_found"

    assert (await client.post(f"/admin/start/{job_id}")).status_code == 202

    async def all_queued() -> bool:
        pages = (await job_detail(client, job_id))["pages"]
        return all(p["status"] == "queued" for p in pages)

    await wait_until(all_queued)
    nothing_left = await client.post(f"/admin/start/{job_id}")
    assert nothing_left.status_code == 409
    assert sorted(
        orjson.loads(b)["page_number"] for b in await drain(channel, services.settings.pages_queue)
    ) == [1, 3]


async def test_purge_queue_returns_queued_pages_to_pending(
    client: httpx.AsyncClient, services: Components, channel: AbstractChannel
) -> None:
    (job_id,) = await _upload_pages(client, jobs=1, pages=5)
    assert (await client.post(f"/admin/start/{job_id}")).status_code == 202

    async def all_queued() -> bool:
        return (await _page_counts(services))["queued"] == 5

    await wait_until(all_queued)
    assert await queue_depth(channel, services.settings.pages_queue) == 5
    response = await client.delete("/admin/delete/queue")
    assert response.status_code == 202

    async def back_to_pending() -> bool:
        return (await _page_counts(services))["pending"] == 5

    await wait_until(back_to_pending)
    assert await queue_depth(channel, services.settings.pages_queue) == 0
    files = await page_numbers(services, job_id)
    assert files == [1, 2, 3, 4, 5], "publishing and purging never delete page files"

    assert (await client.post(f"/admin/start/{job_id}")).status_code == 202
    await wait_until(all_queued)
    assert len(await drain(channel, services.settings.pages_queue)) == 5


async def test_rapid_stop_start_cycles_never_stall_publishing(
    client: httpx.AsyncClient, services: Components, channel: AbstractChannel
) -> None:
    """Stops land at every await of the dispatcher (claims, queue-depth queries, publishes);
    none may break the broker channels or strand a page."""
    jobs = await seed_pages((services.storage, services.sessions), jobs=10, pages=200)
    total = 2000
    for _ in range(40):
        assert (await client.post("/admin/start")).status_code == 202
        await asyncio.sleep(0.03)
        assert (await client.post("/admin/stop")).status_code == 202
        await asyncio.sleep(0.02)
    assert (await client.post("/admin/start")).status_code == 202

    async def all_queued() -> bool:
        return (await _page_counts(services))["queued"] == total

    await wait_until(all_queued, timeout=60)
    bodies = await drain(channel, services.settings.pages_queue)
    received = [(m["job_id"], m["page_number"]) for m in map(orjson.loads, bodies)]
    assert set(received) == {(str(j), n) for j in jobs for n in range(1, 201)}
    assert len(received) == total, "no page sent twice across the stops"


async def test_stop_while_paused_at_the_high_water_mark_halts_and_a_start_resumes(
    tmp_path: Path, channel: AbstractChannel
) -> None:
    """The feeder waits for room in the queue; a stop landing with its wake-up must still end
    the session, and a later start must publish again."""
    async with isolated_gateway(tmp_path, queue_high_water=50, dispatch_poll_s=0.05) as gateway:
        await seed_pages(gateway, jobs=1, pages=300)
        dispatcher = gateway.services.dispatcher
        assert dispatcher is not None, "the test app publishes in-process"
        for _ in range(5):
            assert (await gateway.client.post("/admin/start")).status_code == 202

            async def paused_full() -> bool:
                depth = await queue_depth(channel, gateway.settings.pages_queue)
                return depth >= 40 and dispatcher.publishing

            await wait_until(paused_full)
            assert (await gateway.client.post("/admin/stop")).status_code == 202

            async def halted() -> bool:
                return not dispatcher.publishing

            await wait_until(halted, timeout=10)
            counts = await page_counts(gateway.services)
            assert counts.get("publishing", 0) == 0, counts
            taken = await drain(channel, gateway.settings.pages_queue, idle=0.3)
            assert len(taken) == counts.get("queued", 0), "the queue holds the queued pages"
            async with gateway.services.sessions.begin() as session:
                await session.execute(
                    text("UPDATE pages SET status = 'done' WHERE status = 'queued'")
                )
        counts = await page_counts(gateway.services)
        assert counts.get("done", 0) >= 5 * 40
