"""Two API processes on one database serve the events of one job, whichever stored its results.

Each app has its own lifespan (results consumer, event listener, dispatcher), both consume the
one results queue, and each is served over real TCP, as two replicas behind a load balancer.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from aio_pika.abc import AbstractChannel
from fastapi import FastAPI
from sqlalchemy import text

from ocr_gateway.components import Components
from tests.support.gateway import Gateway, isolated_gateway, seed_pages
from tests.support.replica import Replica, replica
from tests.support.results import done, send_result
from tests.support.sse import SseEvent, job_events
from tests.support.tcp import served

PAGES = 20
SPLIT = 6  # page events read from the first replica before the client moves to the second


@contextlib.asynccontextmanager
async def _over_tcp(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        served(app) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/api/v1", timeout=30) as client,
    ):
        yield client


@contextlib.asynccontextmanager
async def _two_replicas(
    tmp_path: Path,
) -> AsyncIterator[tuple[Gateway, Replica, httpx.AsyncClient, httpx.AsyncClient]]:
    """Two API processes on one database and broker, and a TCP client of each (A, then B)."""
    async with (
        isolated_gateway(tmp_path) as first,
        replica(first.settings) as second,
        _over_tcp(first.app) as client_a,
        _over_tcp(second.app) as client_b,
    ):
        yield first, second, client_a, client_b


async def _recorded_ids(services: Components, job_id: str) -> list[int]:
    async with services.sessions() as session:
        rows = await session.scalars(
            text("SELECT id FROM job_events WHERE job_id = :job_id ORDER BY id"),
            {"job_id": uuid.UUID(job_id)},
        )
        return list(rows)


async def _send_results(channel: AbstractChannel, queue: str, job_id: str, pages: range) -> None:
    for number in pages:
        await send_result(channel, queue, done(job_id, number))


def _page_numbers(events: list[SseEvent]) -> list[int]:
    return [event.data["page_number"] for event in events if event.kind == "page.done"]


async def test_both_replicas_stream_the_same_events_in_order(
    tmp_path: Path, channel: AbstractChannel
) -> None:
    async with _two_replicas(tmp_path) as (first, second, client_a, client_b):
        [job] = await seed_pages(first, jobs=1, pages=PAGES)
        job_id = str(job)
        snapshots = [asyncio.Event(), asyncio.Event()]

        async def follow(client: httpx.AsyncClient, opened: asyncio.Event) -> list[SseEvent]:
            events = []
            async for event in job_events(client, job_id):
                events.append(event)
                opened.set()
            return events

        readers = [
            asyncio.create_task(follow(client, opened))
            for client, opened in zip((client_a, client_b), snapshots, strict=True)
        ]
        await asyncio.wait_for(asyncio.gather(*(opened.wait() for opened in snapshots)), 30)
        await _send_results(channel, first.settings.results_queue, job_id, range(1, PAGES + 1))
        from_a, from_b = await asyncio.wait_for(asyncio.gather(*readers), 60)
        recorded = await _recorded_ids(first.services, job_id)
        handled = (first.services.consumer.handled, second.services.consumer.handled)

    for stream in (from_a, from_b):
        kinds = [event.kind for event in stream]
        assert kinds == ["job.snapshot"] + ["page.done"] * PAGES + ["job.completed"], kinds
        assert stream[0].id is None
        assert sorted(_page_numbers(stream)) == list(range(1, PAGES + 1)), "a gap or a duplicate"
        assert [event.id for event in stream[1:]] == recorded, "every recorded event, in order"
        assert stream[-1].data["completed_pages"] == PAGES
    assert from_a[1:] == from_b[1:], "the two replicas sent different events"
    assert sum(handled) == PAGES
    assert min(handled) > 0, f"one replica stored every result: {handled}"


async def test_a_client_resumes_on_the_other_replica(
    tmp_path: Path, channel: AbstractChannel
) -> None:
    async with _two_replicas(tmp_path) as (first, _, client_a, client_b):
        [job] = await seed_pages(first, jobs=1, pages=PAGES)
        job_id, queue = str(job), first.settings.results_queue
        seen: list[SseEvent] = []
        opened = asyncio.Event()

        async def read_some_from_a() -> None:
            async with contextlib.aclosing(job_events(client_a, job_id)) as events:
                async for event in events:
                    seen.append(event)
                    opened.set()
                    if len(_page_numbers(seen)) == SPLIT:
                        return  # the client's connection to A drops here

        reader = asyncio.create_task(read_some_from_a())
        await asyncio.wait_for(opened.wait(), 30)
        await _send_results(channel, queue, job_id, range(1, SPLIT + 1))
        await asyncio.wait_for(reader, 30)
        await _send_results(channel, queue, job_id, range(SPLIT + 1, PAGES + 1))
        last_id = seen[-1].id
        assert last_id is not None
        rest = [event async for event in job_events(client_b, job_id, last_event_id=last_id)]
        recorded = await _recorded_ids(first.services, job_id)

    assert rest[0].kind == "job.snapshot" and rest[0].id is None, "a reconnect starts afresh"
    kinds = [event.kind for event in rest[1:]]
    assert kinds == ["page.done"] * (PAGES - SPLIT) + ["job.completed"], kinds
    assert sorted(_page_numbers(seen)) == list(range(1, SPLIT + 1))
    assert sorted(_page_numbers(rest)) == list(range(SPLIT + 1, PAGES + 1))
    ids = [event.id for event in seen[1:] + rest[1:]]
    assert ids == recorded, "no gap and no duplicate across the two replicas"
