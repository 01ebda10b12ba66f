"""The async SDK (`clients/python`, `ocr_gateway_client`) against the live gateway over real
TCP: submit real samples, follow events while a worker's results arrive, wait, fetch and
download the result, cancel, delete, typed errors, and events that resume after the
connection drops in the middle of the stream."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aio_pika.abc import AbstractChannel
from fastapi import FastAPI
from ocr_gateway_client import (
    AsyncGatewayClient,
    Event,
    InvalidRequest,
    Job,
    JobConflict,
    JobNotFound,
    UnsupportedMediaType,
    WaitTimeout,
)

from ocr_gateway.components import Components
from tests.support.documents import sample
from tests.support.http import wait_rendered
from tests.support.proxy import FaultProxy
from tests.support.results import done, send_result
from tests.support.tcp import served
from tests.support.waiting import wait_until

FOUR_PAGES = "pdflatex-4-pages.pdf"


@pytest.fixture
async def port(app: FastAPI) -> AsyncIterator[int]:
    async with served(app) as tcp_port:
        yield tcp_port


@pytest.fixture
async def sdk(port: int) -> AsyncIterator[AsyncGatewayClient]:
    async with AsyncGatewayClient(f"http://127.0.0.1:{port}") as gateway:
        yield gateway


async def _rendered(client: httpx.AsyncClient, job: Job) -> None:
    await wait_rendered(client, str(job.job_id))


async def _feed(services: Components, channel: AbstractChannel, job: Job, page: int) -> None:
    await send_result(
        channel, services.settings.results_queue, done(str(job.job_id), page, f"text {page}")
    )


async def _page_done(sdk: AsyncGatewayClient, job: Job, page: int) -> None:
    async def is_done() -> bool:
        return (await sdk.page(job, page)).status == "done"

    await wait_until(is_done, what=f"page {page} done")


async def test_submit_follow_wait_fetch_download_and_delete(
    sdk: AsyncGatewayClient,
    client: httpx.AsyncClient,
    services: Components,
    channel: AbstractChannel,
    tmp_path: Path,
) -> None:
    image = sample("smile.png")
    with image.open("rb") as handle:
        pdf_job, bytes_job, file_job = await sdk.submit(
            sample(FOUR_PAGES), ("smile.png", image.read_bytes()), handle
        )
    assert (pdf_job.filename, pdf_job.total_page_number, pdf_job.status) == (
        FOUR_PAGES,
        4,
        "pending",
    )
    assert (bytes_job.filename, file_job.filename) == ("smile.png", "smile.png")
    for job in (pdf_job, bytes_job, file_job):
        await _rendered(client, job)

    seen: list[Event] = []

    async def follow() -> None:
        async for event in sdk.events(pdf_job):
            seen.append(event)

    follower = asyncio.create_task(follow())
    await wait_until(lambda: _seen(follower, len(seen) >= 1), what="the snapshot")
    for page in range(1, 5):
        await _feed(services, channel, pdf_job, page)
    await asyncio.wait_for(follower, 30)

    assert [event.type for event in seen] == ["job.snapshot"] + ["page.done"] * 4 + [
        "job.completed"
    ]
    assert sorted(event.page_number or 0 for event in seen[1:5]) == [1, 2, 3, 4]
    assert seen[-1].terminal and seen[-1].completed_pages == 4

    finished = await sdk.wait(pdf_job, timeout=10)
    assert finished.status == "completed" and finished.finished
    assert [page.status for page in finished.pages] == ["done"] * 4

    text = await sdk.result(pdf_job, "txt")
    assert text.decode().split("\f") == [f"text {page}" for page in range(1, 5)]
    path = await sdk.download(pdf_job, "txt", tmp_path / "result.txt")
    assert path.read_bytes() == text
    into_folder = await sdk.download(pdf_job.job_id, "json", tmp_path)
    assert into_folder == tmp_path / f"{pdf_job.job_id}.json"
    assert into_folder.read_bytes().startswith(b"{")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["result.txt", f"{pdf_job.job_id}.json"]
    ), "no partial file is left behind"

    deleted = await sdk.delete(pdf_job)
    assert (deleted.deleted, deleted.job_id) == ("job", pdf_job.job_id)
    with pytest.raises(JobNotFound) as missing:
        await sdk.get(pdf_job)
    assert missing.value.status_code == 404
    assert missing.value.error == "not_found"
    assert str(pdf_job.job_id) in str(missing.value.detail)
    with pytest.raises(JobNotFound):
        await sdk.delete(pdf_job)


async def _seen(follower: asyncio.Task[None], enough: bool) -> bool:
    """`enough` events were seen; a follower that failed meanwhile fails the test at once."""
    if follower.done():
        follower.result()
    return enough


async def test_cancel_then_wait_and_events_end_at_once(
    sdk: AsyncGatewayClient, client: httpx.AsyncClient
) -> None:
    [job] = await sdk.submit(sample(FOUR_PAGES))
    await _rendered(client, job)
    cancelled = await sdk.cancel(job)
    assert (cancelled.status, cancelled.cancelled_pages) == ("cancelled", 4)
    assert (await sdk.cancel(job.job_id)).status == "cancelled", "a second cancel is a no-op"
    assert (await asyncio.wait_for(sdk.wait(job), 10)).status == "cancelled"
    events = [event async for event in sdk.events(str(job.job_id))]
    assert [(event.type, event.status, event.id) for event in events] == [
        ("job.snapshot", "cancelled", None)
    ]


async def test_refusals_raise_typed_errors_with_the_gateway_reason(
    sdk: AsyncGatewayClient, client: httpx.AsyncClient
) -> None:
    unknown = uuid.uuid4()
    with pytest.raises(JobNotFound) as not_found:
        await sdk.get(unknown)
    assert not_found.value.body == {
        "error": "not_found",
        "detail": f"job {unknown} does not exist",
    }
    with pytest.raises(JobNotFound):
        [_ async for _ in sdk.events(unknown)]
    with pytest.raises(InvalidRequest) as malformed:
        await sdk.get("not-a-uuid")
    assert malformed.value.status_code == 422

    [job] = await sdk.submit(sample(FOUR_PAGES))
    await _rendered(client, job)
    with pytest.raises(JobConflict) as early:
        await sdk.result(job, "txt")
    assert early.value.status_code == 409
    assert early.value.detail
    with pytest.raises(InvalidRequest):
        await sdk.result(job, "docx")  # type: ignore[arg-type]
    with pytest.raises(WaitTimeout) as timed_out:
        await sdk.wait(job, timeout=0.3)
    assert isinstance(timed_out.value, TimeoutError)
    assert timed_out.value.job.status == "pending"

    with pytest.raises(UnsupportedMediaType) as refused:
        await sdk.submit(sample("smile.png"), ("notes.txt", b"just some text, not a document"))
    assert refused.value.index == 1
    assert refused.value.error == "unsupported_media_type"


async def test_events_resume_after_the_connection_drops_without_gap_or_duplicate(
    port: int,
    sdk: AsyncGatewayClient,
    client: httpx.AsyncClient,
    services: Components,
    channel: AbstractChannel,
) -> None:
    [job] = await sdk.submit(sample(FOUR_PAGES))
    await _rendered(client, job)
    proxy = FaultProxy("127.0.0.1", port)
    await proxy.start()
    seen: list[Event] = []
    try:
        async with AsyncGatewayClient(f"http://127.0.0.1:{proxy.port}") as through_proxy:

            async def follow() -> None:
                async for event in through_proxy.events(job):
                    seen.append(event)

            follower = asyncio.create_task(follow())
            await _feed(services, channel, job, 1)
            await wait_until(lambda: _seen(follower, len(seen) == 2), what="page 1's event")

            proxy.cut()  # the connection drops mid-stream; reconnects are refused for now
            await _feed(services, channel, job, 2)
            await _page_done(sdk, job, 2)
            await asyncio.sleep(0.5)
            proxy.restore()
            await wait_until(
                lambda: _seen(follower, len(seen) >= 4), what="the catch-up after resuming"
            )
            for page in (3, 4):
                await _feed(services, channel, job, page)
            await asyncio.wait_for(follower, 30)
    finally:
        await proxy.close()

    assert [(event.type, event.page_number) for event in seen] == [
        ("job.snapshot", None),
        ("page.done", 1),
        ("job.snapshot", None),  # a fresh one on reconnecting
        ("page.done", 2),  # recorded while disconnected: sent on resuming
        ("page.done", 3),
        ("page.done", 4),
        ("job.completed", None),
    ]
    assert seen[2].completed_pages == 2, "the reconnect's snapshot is current"
    ids = [event.id for event in seen if event.id is not None]
    assert ids == sorted(set(ids)), "ids increase, none twice"


async def test_api_key_and_tenant_are_sent_only_when_given() -> None:
    seen: list[tuple[str | None, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.headers.get("authorization"), request.headers.get("x-tenant-id")))
        return httpx.Response(404, json={"error": "not_found", "detail": "no such job"})

    for key, tenant in (("s3cret", None), (None, None), (None, "acme"), ("s3cret", "acme")):
        async with AsyncGatewayClient(
            "http://gateway", api_key=key, tenant=tenant, transport=httpx.MockTransport(handler)
        ) as gateway:
            with pytest.raises(JobNotFound):
                await gateway.get(uuid.uuid4())
    assert seen == [
        ("Bearer s3cret", None),
        (None, None),
        (None, "acme"),
        ("Bearer s3cret", "acme"),
    ]


async def test_each_job_carries_its_tenant_and_another_tenant_is_told_it_does_not_exist(
    port: int,
) -> None:
    base = f"http://127.0.0.1:{port}"
    async with (
        AsyncGatewayClient(base, tenant="acme") as acme,
        AsyncGatewayClient(base, tenant="globex") as globex,
    ):
        [job] = await acme.submit(("smile.png", sample("smile.png").read_bytes()))
        assert (await acme.get(job)).tenant == "acme"
        assert [summary.tenant for summary in (await acme.jobs()).jobs] == ["acme"]
        assert (await globex.jobs()).jobs == []
        with pytest.raises(JobNotFound) as hidden:
            await globex.get(job)
        assert hidden.value.detail == f"job {job.job_id} does not exist"
        with pytest.raises(JobNotFound):
            await globex.cancel(job)
        with pytest.raises(JobNotFound):
            await globex.delete(job)
        assert (await acme.get(job)).status != "cancelled"
