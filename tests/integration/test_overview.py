"""`GET /api/v1/admin/overview`, what the monitoring page polls, against the real PostgreSQL
and RabbitMQ: dispatch state, queue depths and consumers, pages by status, throughput."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import httpx
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from sqlalchemy import text

from ocr_gateway.components import Components
from ocr_gateway.monitor.throughput import ThroughputRecorder
from tests.support.documents import sample
from tests.support.http import upload, wait_rendered
from tests.support.waiting import wait_until


async def overview(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/admin/overview")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_overview_of_an_idle_gateway(client: httpx.AsyncClient, services: Components) -> None:
    # The app's own results consumer listens on the results queue (it starts in the background).
    async def results_consumed() -> bool:
        return bool((await overview(client))["results_queue"]["consumers"] == 1)

    await wait_until(results_consumed, timeout=30)
    async with services.sessions.begin() as session:
        await session.execute(text("DELETE FROM worker_throughput"))  # earlier tests' workers
    body = await overview(client)
    assert body["dispatch"]["state"] == "stopped"
    assert body["dispatch"]["mode"] == services.settings.dispatch_mode
    assert body["pages_queue"] == {
        "name": services.settings.pages_queue,
        "ready": 0,
        "consumers": 0,
    }
    assert body["results_queue"]["name"] == services.settings.results_queue
    assert body["results_queue"]["ready"] == 0
    assert set(body["pages_by_status"]) >= {"pending", "queued", "done", "failed"}
    assert sum(body["pages_by_status"].values()) == 0
    minutes = [dt.datetime.fromisoformat(p["minute"]) for p in body["throughput"]]
    assert len(minutes) == 60
    assert all(b - a == dt.timedelta(minutes=1) for a, b in itertools.pairwise(minutes))
    assert dt.datetime.now(dt.UTC) - minutes[-1] < dt.timedelta(minutes=1)
    assert body["pages_per_minute"] == 0


async def test_overview_counts_pages_queue_consumers_and_throughput(
    client: httpx.AsyncClient, services: Components, channel: AbstractChannel
) -> None:
    job = await upload(client, sample("pdflatex-4-pages.pdf"))
    await wait_rendered(client, job["job_id"])
    assert (await overview(client))["pages_by_status"]["pending"] == 4

    # A consumer on the pages queue is a worker to the page; a start publishes the pages.
    held: list[AbstractIncomingMessage] = []

    async def hold(message: AbstractIncomingMessage) -> None:
        held.append(message)  # never acked: it stays with this consumer

    await channel.set_qos(prefetch_count=1)
    queue = await channel.get_queue(services.settings.pages_queue, ensure=False)
    tag = await queue.consume(hold, no_ack=False)
    try:
        response = await client.post(f"/admin/start/{job['job_id']}")
        assert response.status_code == 202

        async def published() -> bool:
            body = await overview(client)
            return bool(
                body["pages_queue"]["consumers"] == 1 and body["pages_by_status"]["queued"] == 4
            )

        await wait_until(published, timeout=30)
        body = await overview(client)
        # One held unacked by the consumer, three ready.
        assert len(held) == 1
        assert body["pages_queue"]["ready"] == 3
    finally:
        await queue.cancel(tag)

    # Three pages answered two minutes ago by one worker, one now by another: the chart adds
    # up the workers per minute.
    async with services.sessions.begin() as session:
        await session.execute(text("DELETE FROM worker_throughput"))
        await session.execute(
            text(
                "INSERT INTO worker_throughput (minute, worker, done_pages, failed_pages)"
                " VALUES (date_trunc('minute', now() - interval '2 minutes'), 'a:1', 3, 1)"
            )
        )
    recorder = ThroughputRecorder(services.sessions)
    recorder.count("b:2", "done")
    recorder.count("b:2", "failed")
    await recorder.flush()
    body = await overview(client)
    async with services.sessions() as session:
        rows = await session.execute(text("SELECT worker, minute FROM worker_throughput"))
        recorded: dict[str, dt.datetime] = {worker: minute for worker, minute in rows.all()}
    by_minute = {dt.datetime.fromisoformat(p["minute"]): p["pages"] for p in body["throughput"]}
    assert by_minute[recorded["a:1"]] == 3
    assert by_minute[recorded["b:2"]] == 1
    assert recorded["b:2"] - recorded["a:1"] == dt.timedelta(minutes=2)
    assert sum(by_minute.values()) == 4
    assert body["pages_per_minute"] == 4 / 5
    async with services.sessions.begin() as session:
        await session.execute(text("DELETE FROM worker_throughput"))


async def test_overview_gives_each_workers_rate_from_the_results_counted(
    client: httpx.AsyncClient, services: Components
) -> None:
    """The results consumer counts what it stores by the result's `worker`; the counts of
    every consumer add up per minute, and an older worker's results (no `worker`) count as
    `unnamed`."""
    async with services.sessions.begin() as session:
        await session.execute(text("DELETE FROM worker_throughput"))
    first, second = ThroughputRecorder(services.sessions), ThroughputRecorder(services.sessions)
    for _ in range(6):
        first.count("ocr-1:100", "done")
    first.count("ocr-1:100", "failed")
    for _ in range(4):
        second.count("ocr-1:100", "done")
    second.count(None, "done")
    await first.flush()
    await second.flush()
    await second.flush()  # nothing left: adds nothing
    workers = {w["worker"]: w for w in (await overview(client))["workers"]}
    assert workers["ocr-1:100"]["done_pages"] == 10
    assert workers["ocr-1:100"]["failed_pages"] == 1
    assert workers["ocr-1:100"]["pages_per_minute"] == 11 / 5
    assert workers["unnamed"]["done_pages"] >= 1
    async with services.sessions.begin() as session:
        await session.execute(text("DELETE FROM worker_throughput"))
