"""DISPATCH_MODE=auto: rendered pages are published without a start, within the high-water
mark, and an operator's stop holds (across restarts) until a start of every page."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path

import httpx
import orjson
from aio_pika.abc import AbstractChannel
from sqlalchemy import text

from ocr_gateway.components import Components
from ocr_gateway.dispatch import repository as dispatch_repo
from ocr_gateway.messaging.amqp import queue_depth
from tests.support.documents import blank_pdf
from tests.support.gateway import Gateway, drain, isolated_gateway, page_counts, seed_pages
from tests.support.http import upload, wait_rendered
from tests.support.replica import replica
from tests.support.waiting import wait_until

QUIET_S = 1.0  # several dispatcher polls (0.2 s in tests): long enough to see nothing happen


async def _submit(client: httpx.AsyncClient, pages: int) -> str:
    accepted = await upload(client, f"auto-{pages}.pdf", blank_pdf(pages))
    await wait_rendered(client, accepted["job_id"])
    return str(accepted["job_id"])


async def _job_statuses(services: Components, job_id: str) -> set[str]:
    async with services.sessions() as session:
        rows = await session.scalars(
            text("SELECT DISTINCT status FROM pages WHERE job_id = :job_id"),
            {"job_id": uuid.UUID(job_id)},
        )
        return set(rows)


async def _stopped(services: Components) -> bool:
    async with services.sessions() as session:
        return await dispatch_repo.is_stopped(session)


async def _wait_depth(channel: AbstractChannel, queue: str, depth: int) -> None:
    async def reached() -> bool:
        return await queue_depth(channel, queue) == depth

    reached.__name__ = f"{queue} depth=={depth}"
    await wait_until(reached, timeout=30, interval=0.05)


async def _publishing(client: httpx.AsyncClient) -> bool:
    return bool((await client.get("/health")).json()["publishing"])


async def test_pages_go_out_without_a_start_and_a_stop_holds_until_a_start_of_all(
    tmp_path: Path, channel: AbstractChannel
) -> None:
    async with isolated_gateway(tmp_path, dispatch_mode="auto") as gateway:
        client, services = gateway.client, gateway.services
        queue = gateway.settings.pages_queue
        first = await _submit(client, 3)
        await _wait_depth(channel, queue, 3)

        async def recorded() -> bool:  # confirms are recorded a flush interval later
            return await _job_statuses(services, first) == {"queued"}

        await wait_until(recorded)

        assert (await client.post("/admin/stop")).status_code == 202
        assert await _stopped(services)
        held = await _submit(client, 2)
        other = await _submit(client, 2)
        await asyncio.sleep(QUIET_S)
        assert await queue_depth(channel, queue) == 3, "published during a stop"
        assert await _job_statuses(services, held) == {"pending"}
        assert not await _publishing(client)

        # A start of one job publishes that job; the stop stays in force for the rest.
        assert (await client.post(f"/admin/start/{held}")).status_code == 202
        await _wait_depth(channel, queue, 5)
        await asyncio.sleep(QUIET_S)
        assert await queue_depth(channel, queue) == 5
        assert await _job_statuses(services, other) == {"pending"}
        assert await _stopped(services)

        # A start of every page lifts the stop: the waiting pages and later uploads go out.
        assert (await client.post("/admin/start")).status_code == 202
        await _wait_depth(channel, queue, 7)
        assert not await _stopped(services)
        await _submit(client, 1)
        await _wait_depth(channel, queue, 8)
        bodies = await drain(channel, queue, idle=0.5)
        sent = {(m["job_id"], m["page_number"]) for m in map(orjson.loads, bodies)}
        assert len(bodies) == len(sent) == 8, "every page sent once"


HIGH_WATER = 100
TOTAL = 1500
STOP_AT = 300  # pages taken by the consumer when the stop is given


async def test_flow_control_holds_and_a_stop_halts_publishing_until_a_start(
    tmp_path: Path, channel: AbstractChannel
) -> None:
    async with isolated_gateway(
        tmp_path, dispatch_mode="auto", queue_high_water=HIGH_WATER
    ) as gateway:
        await _paced_run(gateway, channel)


async def _paced_run(gateway: Gateway, channel: AbstractChannel) -> None:
    """A consumer slower than publishing takes every page while the depth is sampled."""
    client, queue_name = gateway.client, gateway.settings.pages_queue
    received: list[tuple[str, int]] = []
    depths: list[int] = []
    enough = asyncio.Event()
    await gateway.services.broker.pages_depth()  # connects, declaring the queues
    await channel.set_qos(prefetch_count=20)
    queue = await channel.declare_queue(queue_name, passive=True)

    async def consume() -> None:
        async with queue.iterator() as messages:
            async for message in messages:
                body = orjson.loads(message.body)
                received.append((body["job_id"], body["page_number"]))
                await message.ack()
                if len(received) >= STOP_AT:
                    enough.set()
                await asyncio.sleep(0.002)

    async def sample() -> None:
        while True:
            depths.append(await queue_depth(channel, queue_name))
            await asyncio.sleep(0.02)

    tasks = [asyncio.create_task(consume()), asyncio.create_task(sample())]
    try:
        jobs = await seed_pages(gateway, jobs=1, pages=TOTAL)
        await asyncio.wait_for(enough.wait(), 60)
        assert await _publishing(client), "/health shows the automatic publishing"
        assert (await client.post("/admin/stop")).status_code == 202

        async def settled() -> bool:
            return (await page_counts(gateway.services)).get("publishing", 0) == 0

        await wait_until(settled)
        at_stop = await page_counts(gateway.services)
        await _wait_taken(received, at_stop.get("queued", 0))
        assert len(received) == at_stop.get("queued", 0), "a page went out after the stop"
        assert at_stop.get("pending", 0) > 0, "the stop came after everything was sent"
        assert (await page_counts(gateway.services)) == at_stop
        assert not await _publishing(client)

        assert (await client.post("/admin/start")).status_code == 202
        await _wait_taken(received, TOTAL)
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert len(received) == TOTAL, "no page sent twice"
    assert set(received) == {(str(jobs[0]), n) for n in range(1, TOTAL + 1)}
    assert max(depths) <= HIGH_WATER, f"queue depth reached {max(depths)}"
    assert max(depths) >= HIGH_WATER // 2, "the consumer never fell behind: flow control untested"


async def _wait_taken(received: list[tuple[str, int]], count: int) -> None:
    """Wait until the consumer took `count` pages, then watch a moment for any more."""

    async def taken() -> bool:
        return len(received) >= count

    await wait_until(taken, timeout=60)
    await asyncio.sleep(QUIET_S)


async def test_a_stop_survives_a_restart(tmp_path: Path, channel: AbstractChannel) -> None:
    """The stop is a row in PostgreSQL: an API process started later (or any other) keeps it."""
    async with isolated_gateway(tmp_path) as harness:  # manual: publishes only on a start
        automatic = harness.settings.model_copy(update={"dispatch_mode": "auto"})
        queue = automatic.pages_queue
        async with replica(automatic) as before:
            assert (await before.client.post("/admin/stop")).status_code == 202
        [job_id] = await seed_pages(harness, jobs=1, pages=20)
        async with replica(automatic) as after:
            await asyncio.sleep(QUIET_S)
            assert await queue_depth(channel, queue) == 0, "the restarted process published"
            assert await _job_statuses(after.services, str(job_id)) == {"pending"}
            assert await _stopped(after.services)
            assert (await after.client.post("/admin/start")).status_code == 202
            await _wait_depth(channel, queue, 20)
        assert not await _stopped(harness.services)
