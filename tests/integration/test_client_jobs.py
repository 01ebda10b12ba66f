"""The client's job API: read, follow (SSE, websocket, long poll) with resume, cancel, delete.

Results come from the results queue as a worker would send them, through the real consumer,
so every event here was recorded in `job_events` and announced by PostgreSQL.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from aio_pika.abc import AbstractChannel
from fastapi import FastAPI
from httpx_ws import WebSocketDisconnect, aconnect_ws

from ocr_gateway.components import Components
from ocr_gateway.messaging.amqp import queue_depth
from tests.support.documents import blank_pdf
from tests.support.http import upload, wait_rendered
from tests.support.results import done, send_result
from tests.support.stored import job_names
from tests.support.tcp import served
from tests.support.waiting import wait_until


@pytest.fixture
async def live(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app over real TCP: streams (SSE, websockets) arrive as they are sent, which an
    in-process transport, buffering whole answers, cannot show."""
    async with (
        served(app) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/api/v1", timeout=30) as http,
    ):
        yield http


async def _rendered_job(client: httpx.AsyncClient, pages: int = 3) -> str:
    accepted = await upload(client, "three.pdf", blank_pdf(pages))
    await wait_rendered(client, accepted["job_id"])
    return str(accepted["job_id"])


async def _sse(
    client: httpx.AsyncClient, job_id: str, headers: dict[str, str] | None = None
) -> AsyncIterator[dict[str, Any]]:
    """The parsed events of the job's SSE stream, each as {id, event, data}."""
    async with client.stream("GET", f"/jobs/{job_id}/events", headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        event: dict[str, Any] = {}
        async for line in response.aiter_lines():
            if not line:
                if "event" in event:
                    yield event
                event = {}
            elif line.startswith("id:"):
                event["id"] = int(line[3:].strip())
            elif line.startswith("event:"):
                event["event"] = line[6:].strip()
            elif line.startswith("data:"):
                event["data"] = orjson.loads(line[5:].strip())


async def test_get_job_and_page_and_their_bad_input(
    client: httpx.AsyncClient, services: Components, channel: AbstractChannel
) -> None:
    job_id = await _rendered_job(client)
    job = (await client.get(f"/jobs/{job_id}")).json()
    assert job["status"] == "pending"
    assert job["total_page_number"] == 3
    assert [page["status"] for page in job["pages"]] == ["pending"] * 3
    await send_result(channel, services.settings.results_queue, done(job_id, 2, "hello"))

    async def page_two_done() -> bool:
        return bool((await client.get(f"/jobs/{job_id}/pages/2")).json()["status"] == "done")

    await wait_until(page_two_done)
    page = (await client.get(f"/jobs/{job_id}/pages/2")).json()
    assert page["text"] == "hello"
    assert page["source"] == "ocr"
    assert page["boxes"] == [
        {"text": "hello", "confidence": 0.9, "polygon": [[10, 20], [110, 20], [110, 40], [10, 40]]}
    ]
    for path, code in [
        (f"/jobs/{uuid.uuid4()}", 404),
        ("/jobs/not-a-uuid", 422),
        (f"/jobs/{job_id}/pages/4", 404),
        (f"/jobs/{job_id}/pages/0", 422),
        (f"/jobs/{uuid.uuid4()}/events", 404),
        (f"/jobs/{job_id}?wait=61", 422),
    ]:
        response = await client.get(path)
        assert response.status_code == code, path
        assert set(response.json()) == {"error", "detail"}, path


async def test_events_stream_to_the_end_and_resume_without_gap_or_duplicate(
    client: httpx.AsyncClient,
    live: httpx.AsyncClient,
    services: Components,
    channel: AbstractChannel,
) -> None:
    job_id = await _rendered_job(client)
    queue = services.settings.results_queue
    seen: list[dict[str, Any]] = []

    async def read_until_first_page() -> None:
        async for event in _sse(live, job_id):
            seen.append(event)
            if event["event"] == "page.done":
                return

    reader = asyncio.create_task(read_until_first_page())
    await asyncio.sleep(0.3)  # the stream is open and has sent its snapshot
    await send_result(channel, queue, done(job_id, 1))
    await asyncio.wait_for(reader, 30)
    assert [event["event"] for event in seen] == ["job.snapshot", "page.done"]
    assert "id" not in seen[0]
    assert seen[1]["data"]["page_number"] == 1
    assert seen[1]["data"]["completed_pages"] == 1
    # The client is gone; two more results arrive; it comes back with Last-Event-ID.
    await send_result(channel, queue, done(job_id, 2))
    await send_result(channel, queue, done(job_id, 3))
    resumed = [
        event async for event in _sse(client, job_id, headers={"Last-Event-ID": str(seen[1]["id"])})
    ]
    kinds = [event["event"] for event in resumed]
    assert kinds == ["job.snapshot", "page.done", "page.done", "job.completed"], kinds
    assert [event["data"]["page_number"] for event in resumed[1:3]] == [2, 3]
    ids = [event["id"] for event in resumed[1:]]
    assert ids == sorted(ids) and ids[0] > seen[1]["id"]
    assert resumed[-1]["data"]["status"] == "completed"
    # A new reader of a finished job gets its snapshot, and the stream ends.
    after = [event async for event in _sse(live, job_id)]
    assert [event["event"] for event in after] == ["job.snapshot"]
    assert after[0]["data"]["status"] == "completed"


async def test_long_poll_answers_when_the_job_changes(
    client: httpx.AsyncClient, services: Components, channel: AbstractChannel
) -> None:
    job_id = await _rendered_job(client, pages=1)
    polled = asyncio.create_task(client.get(f"/jobs/{job_id}", params={"wait": 30}))
    await asyncio.sleep(0.5)
    assert not polled.done(), "answered before anything happened"
    await send_result(channel, services.settings.results_queue, done(job_id, 1))
    answer = await asyncio.wait_for(polled, 20)
    assert answer.json()["status"] == "completed"
    quiet = await _rendered_job(client, pages=1)
    started = asyncio.get_running_loop().time()
    unchanged = await client.get(f"/jobs/{quiet}", params={"wait": 1})
    assert unchanged.status_code == 200
    assert asyncio.get_running_loop().time() - started >= 0.9


async def test_websocket_sends_the_same_events_and_refuses_an_unknown_job(
    client: httpx.AsyncClient,
    live: httpx.AsyncClient,
    services: Components,
    channel: AbstractChannel,
) -> None:
    job_id = await _rendered_job(client, pages=1)
    async with aconnect_ws(f"/jobs/{job_id}/ws", live) as socket:  # type: ignore[var-annotated]
        first = orjson.loads(await socket.receive_text())
        assert first["type"] == "job.snapshot"
        await send_result(channel, services.settings.results_queue, done(job_id, 1))
        second = orjson.loads(await socket.receive_text())
        third = orjson.loads(await socket.receive_text())
        assert [second["type"], third["type"]] == ["page.done", "job.completed"]
    async with aconnect_ws(f"/jobs/{uuid.uuid4()}/ws", live) as socket:  # type: ignore[var-annotated]
        with pytest.raises(WebSocketDisconnect) as closed:
            await socket.receive_text()
    assert closed.value.code == 1008
    assert "does not exist" in closed.value.reason


async def test_cancel_then_cancel_again_and_a_late_result_is_dropped(
    client: httpx.AsyncClient,
    live: httpx.AsyncClient,
    services: Components,
    channel: AbstractChannel,
) -> None:
    job_id = await _rendered_job(client)
    queue = services.settings.results_queue
    cancelled = await client.post(f"/jobs/{job_id}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json() == {"job_id": job_id, "status": "cancelled", "cancelled_pages": 3}
    again = await client.post(f"/jobs/{job_id}/cancel")
    assert again.status_code == 200
    assert again.json()["status"] == "cancelled"
    await send_result(channel, queue, done(job_id, 1))
    events = [event async for event in _sse(live, job_id, headers={"Last-Event-ID": "0"})]
    assert [event["event"] for event in events] == ["job.snapshot", "job.cancelled"]
    job = (await client.get(f"/jobs/{job_id}")).json()
    assert job["status"] == "cancelled"
    assert {page["status"] for page in job["pages"]} == {"cancelled"}
    start = await client.post(f"/admin/start/{job_id}")
    assert start.status_code == 409, "a cancelled job has nothing to publish"


async def test_cancel_also_cancels_pages_out_with_the_workers(
    client: httpx.AsyncClient, services: Components, channel: AbstractChannel
) -> None:
    """Pages already published (queued) are not done: they become cancelled too, and the
    result a worker sends for one afterwards is acked and dropped."""
    job_id = await _rendered_job(client, pages=2)
    assert (await client.post(f"/admin/start/{job_id}")).status_code == 202

    async def all_queued() -> bool:
        job = (await client.get(f"/jobs/{job_id}")).json()
        return {page["status"] for page in job["pages"]} == {"queued"}

    await wait_until(all_queued)
    await send_result(channel, services.settings.results_queue, done(job_id, 1))

    async def first_done() -> bool:
        return bool((await client.get(f"/jobs/{job_id}/pages/1")).json()["status"] == "done")

    await wait_until(first_done)
    cancelled = (await client.post(f"/jobs/{job_id}/cancel")).json()
    assert cancelled == {"job_id": job_id, "status": "cancelled", "cancelled_pages": 1}
    await send_result(channel, services.settings.results_queue, done(job_id, 2, "too late"))
    await wait_until(lambda: _results_queue_empty(channel, services))
    page = (await client.get(f"/jobs/{job_id}/pages/2")).json()
    assert page["status"] == "cancelled"
    assert page["text"] is None
    job = (await client.get(f"/jobs/{job_id}")).json()
    assert (job["status"], job["completed_pages"]) == ("cancelled", 1)


async def _results_queue_empty(channel: AbstractChannel, services: Components) -> bool:
    return await queue_depth(channel, services.settings.results_queue) == 0


async def test_delete_ends_the_stream_with_job_deleted(
    client: httpx.AsyncClient, live: httpx.AsyncClient, services: Components
) -> None:
    job_id = await _rendered_job(client)
    seen: list[str] = []

    async def follow() -> None:
        async for event in _sse(live, job_id):
            seen.append(event["event"])

    reader = asyncio.create_task(follow())
    await asyncio.sleep(0.3)
    deleted = await client.delete(f"/jobs/{job_id}")
    assert deleted.status_code == 200
    await asyncio.wait_for(reader, 20)
    assert seen == ["job.snapshot", "job.deleted"]
    assert (await client.delete(f"/jobs/{job_id}")).status_code == 404
    assert (await client.post(f"/jobs/{job_id}/cancel")).status_code == 404
    assert await job_names(services, job_id) == []


async def test_a_reader_that_goes_away_leaves_nothing_behind(
    client: httpx.AsyncClient, live: httpx.AsyncClient, services: Components
) -> None:
    """A client that drops its SSE stream or its websocket mid-way: its reader is gone from the
    event hub (no task keeps following the job)."""
    job_id = await _rendered_job(client, pages=1)
    job = uuid.UUID(job_id)

    async def reader_following() -> bool:
        return services.events.readers(job) == 1

    async def reader_gone() -> bool:
        return services.events.readers(job) == 0

    async with live.stream("GET", f"/jobs/{job_id}/events") as response:
        lines = response.aiter_lines()  # kept open: leaving an httpx line loop closes the stream
        while not (await anext(lines)).startswith("data:"):
            pass  # until the snapshot has arrived
        await wait_until(reader_following, timeout=10)
    # the client closed the connection mid-stream
    await wait_until(reader_gone, timeout=10)
    async with aconnect_ws(f"/jobs/{job_id}/ws", live) as socket:  # type: ignore[var-annotated]
        await socket.receive_text()
        await wait_until(reader_following, timeout=10)
    await wait_until(reader_gone, timeout=10)
