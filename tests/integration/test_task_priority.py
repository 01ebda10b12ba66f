"""Interactive pages overtake batch backlogs, and still obey flow control.

A task's pages (jobs.priority = TASK_PRIORITY, copied to its pages) are claimed before the
jobs' pages, go out while a batch backlog holds the pages queue at its high-water mark
(bounded by their own, `TASK_HIGH_WATER`), and are published with their AMQP priority into
a priority queue, so every consumer gets them next. A pages queue declared without that
priority refuses the start.

Task jobs are made here the way the task API makes them (a job whose priority is
`TASK_PRIORITY`, its pages recorded by the renderer's query, then a start of that job with a
NOTIFY), so these tests do not depend on the task routes.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import logging
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import orjson
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from PIL import Image
from sqlalchemy import text

from ocr_gateway.components import Components
from ocr_gateway.db.engine import SessionFactory
from ocr_gateway.dispatch import repository as repo
from ocr_gateway.jobs import repository as jobs_repo
from ocr_gateway.messaging.amqp import (
    PAGES_MAX_PRIORITY,
    PagesQueueMismatch,
    dead_letter_queue,
    declare_pages_queue,
    queue_arguments,
    queue_depth,
)
from ocr_gateway.rendering import repository as rendering_repo
from ocr_gateway.storage.keys import page_key
from ocr_gateway.tasks import TASK_PRIORITY
from ocr_gateway.tenants import repository as tenants_repo
from tests.support.gateway import Gateway, isolated_gateway, make_settings, put_all, seed_pages
from tests.support.waiting import wait_until
from tests.support.worker import LogLineMissing, worker_process

needs_ocr = pytest.mark.skipif(
    importlib.util.find_spec("rapidocr_onnxruntime") is None,
    reason="rapidocr_onnxruntime is not importable: install the OCR extra",
)


# ---------------------------------------------------------------- helpers


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (64, 64), 255).save(buffer, format="PNG")
    return buffer.getvalue()


async def seed_task(
    target: Gateway | Components, pages: int = 1, *, tenant: str = "default"
) -> uuid.UUID:
    """A rendered task job: its job has TASK_PRIORITY before its pages are recorded, so the
    pages take it from the job (as they take the tenant). No start is added."""
    services = target.services if isinstance(target, Gateway) else target
    sessions: SessionFactory = services.sessions
    job_id = uuid.uuid4()
    png = _png()
    await put_all(services.store, {page_key(job_id, n): png for n in range(1, pages + 1)})
    async with sessions.begin() as session:
        await tenants_repo.ensure_tenant(session, tenant)
        await jobs_repo.create_job(
            session,
            job_id=job_id,
            tenant=tenant,
            filename="task.png",
            media_type="image/png",
            total_page_number=pages,
            render_lease_s=60,
        )
        await session.execute(
            text("UPDATE jobs SET priority = :p WHERE job_id = :j"),
            {"p": TASK_PRIORITY, "j": job_id},
        )
        await rendering_repo.record_rendered_pages(
            session,
            job_id,
            [(n, page_key(job_id, n)) for n in range(1, pages + 1)],
            render_lease_s=60,
        )
        await rendering_repo.finish_render(session, job_id)
    return job_id


async def request_job(services: Components, job_id: uuid.UUID) -> float:
    """What the task API does for a new task: a start of its job and a NOTIFY, in one
    transaction. Returns the perf_counter at commit."""
    async with services.sessions.begin() as session:
        await repo.add_dispatch_request(session, job_id)
        await repo.notify_dispatchers(session, "start")
    return time.perf_counter()


async def claim_rolled_back(
    services: Components,
    limit: int,
    *,
    job_id: uuid.UUID | None = None,
    batch_limit: int | None = None,
    task_high_water: int | None = None,
) -> list[repo.ClaimedPage]:
    """What one claim would take under a start (of every page, or of one job), undone after."""
    async with services.sessions() as session:
        await repo.add_dispatch_request(session, job_id)
        claimed = await repo.claim_pages(
            session,
            limit=limit,
            lease_s=60,
            batch_limit=batch_limit,
            task_high_water=task_high_water,
        )
        await session.rollback()
    return claimed


async def page_statuses(services: Components, job_id: uuid.UUID) -> dict[str, int]:
    async with services.sessions() as session:
        rows = (
            await session.execute(
                text("SELECT status, count(*) FROM pages WHERE job_id = :j GROUP BY status"),
                {"j": job_id},
            )
        ).all()
    return {str(row[0]): int(row[1]) for row in rows}


async def fill_queue(channel: AbstractChannel, queue: str, messages: int) -> None:
    """Batch-like messages straight into the pages queue (no priority), confirmed."""
    body = orjson.dumps({"job_id": str(uuid.uuid4()), "page_number": 1, "image_base64": "AA=="})
    exchange = channel.default_exchange
    for start in range(0, messages, 500):
        await asyncio.gather(
            *(
                exchange.publish(aio_pika.Message(body), routing_key=queue)
                for _ in range(min(500, messages - start))
            )
        )


async def get_message(channel: AbstractChannel, queue: str) -> AbstractIncomingMessage:
    declared = await channel.declare_queue(queue, passive=True)
    message = await declared.get(no_ack=True, fail=False, timeout=5)
    assert message is not None, f"{queue} is empty"
    return message


@pytest.fixture
async def confirm_channel(services: Components) -> AsyncIterator[AbstractChannel]:
    connection = await aio_pika.connect(services.settings.rabbitmq_url.get_secret_value())
    async with connection:
        yield await connection.channel(publisher_confirms=True)


# ---------------------------------------------------------------- claims


async def test_task_pages_are_claimed_first_and_carry_their_jobs_priority(
    services: Components,
) -> None:
    target = (services.storage, services.sessions)
    await seed_pages(target, 2, 50, tenant="A")
    await seed_pages(target, 1, 50, tenant="B")
    task = await seed_task(services, 3, tenant="B")

    claimed = await claim_rolled_back(services, 20)

    assert len(claimed) == 20
    assert [(p.job_id, p.page_number, p.priority) for p in claimed[:3]] == [
        (task, n, TASK_PRIORITY) for n in (1, 2, 3)
    ]
    assert {p.priority for p in claimed[3:]} == {0}
    # The rest is the fair claim of batch pages: A and B alternate.
    assert "".join(p.tenant for p in claimed[3:9]) in ("ABABAB", "BABABA")
    async with services.sessions() as session:
        copied = await session.scalar(
            text("SELECT array_agg(DISTINCT priority) FROM pages WHERE job_id = :j"), {"j": task}
        )
    assert copied == [TASK_PRIORITY], "the pages take the job's priority"


async def test_a_task_claim_keeps_to_starts_cancelled_jobs_and_its_high_water_mark(
    services: Components,
) -> None:
    target = (services.storage, services.sessions)
    (batch,) = await seed_pages(target, 1, 30, tenant="A")
    task = await seed_task(services, 5)
    cancelled = await seed_task(services, 2)
    async with services.sessions.begin() as session:
        await session.execute(
            text("UPDATE jobs SET status = 'cancelled' WHERE job_id = :j"), {"j": cancelled}
        )

    # A start of one batch job takes none of the task's pages.
    assert {p.job_id for p in await claim_rolled_back(services, 20, job_id=batch)} == {batch}
    # A start of the task takes its pages only; never the cancelled task's.
    only_task = await claim_rolled_back(services, 20, job_id=task)
    assert [p.page_number for p in only_task] == [1, 2, 3, 4, 5]
    every = await claim_rolled_back(services, 50)
    assert cancelled not in {p.job_id for p in every}
    # At the queue's high-water mark (no room for batch pages) task pages are still claimed.
    assert [p.job_id for p in await claim_rolled_back(services, 20, batch_limit=0)] == [task] * 5
    # Their own mark bounds them: 3 in flight of 4 leaves room for one.
    async with services.sessions.begin() as session:
        await session.execute(
            text("UPDATE pages SET status = 'queued' WHERE job_id = :j AND page_number <= 3"),
            {"j": task},
        )
    bounded = await claim_rolled_back(services, 20, batch_limit=0, task_high_water=4)
    assert [(p.job_id, p.page_number) for p in bounded] == [(task, 4)]
    assert await claim_rolled_back(services, 20, batch_limit=0, task_high_water=3) == []
    # Held back task pages wait for their own claim: the fair claim of batch pages skips them.
    rest = await claim_rolled_back(services, 50, task_high_water=3)
    assert {p.job_id for p in rest} == {batch}


# ---------------------------------------------------------------- publishing


async def test_a_task_page_overtakes_a_full_pages_queue_and_is_the_next_message(
    tmp_path: Path,
) -> None:
    """5,200 batch messages in the queue (over its high-water mark of 5,000), a batch job
    started and paused; a task's start then reaches the broker within milliseconds (the poll
    interval is 5 s here, so only the NOTIFY's wake-up can do it), and the task's page is the
    first message a consumer gets."""
    async with isolated_gateway(tmp_path, dispatch_poll_s=5.0) as gateway:
        services = gateway.services
        settings = services.settings
        dispatcher = services.dispatcher
        assert dispatcher is not None
        assert settings.queue_high_water == 5000
        await services.broker.ensure_connected()  # declares the pages queue
        connection = await aio_pika.connect(settings.rabbitmq_url.get_secret_value())
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            await fill_queue(channel, settings.pages_queue, 5200)
            (batch,) = await seed_pages(gateway, 1, 200)
            await services.control.start_job(batch)
            await asyncio.sleep(1.0)
            assert dispatcher.publishing, "the batch job's session runs, paused at high water"
            assert await page_statuses(services, batch) == {"pending": 200}

            task = await seed_task(gateway)
            published = dispatcher.published
            requested = await request_job(services, task)
            while dispatcher.published == published:
                assert time.perf_counter() - requested < 4.0, "the task waited for a poll"
                await asyncio.sleep(0.001)
            latency_ms = 1000 * (time.perf_counter() - requested)
            print(f"task page confirmed {latency_ms:.1f} ms after its start, 5,200 in the queue")

            async def task_queued() -> bool:
                return await page_statuses(services, task) == {"queued": 1}

            await wait_until(task_queued, timeout=10)
            assert await page_statuses(services, batch) == {"pending": 200}, "batch still paused"
            assert await queue_depth(channel, settings.pages_queue) == 5201
            first = await get_message(channel, settings.pages_queue)
            assert orjson.loads(first.body)["job_id"] == str(task)
            assert first.priority == TASK_PRIORITY
            assert first.message_id == f"{task}:1"
        assert latency_ms < 1000


async def test_task_pages_stop_at_their_own_high_water_mark(tmp_path: Path) -> None:
    """TASK_HIGH_WATER=3: of a 5-page task, 3 are published; the other 2 once some are
    answered (the results consumer records them)."""
    async with isolated_gateway(tmp_path, task_high_water=3) as gateway:
        services = gateway.services
        settings = services.settings
        task = await seed_task(gateway, 5)
        await request_job(services, task)

        async def three_queued() -> bool:
            return (await page_statuses(services, task)).get("queued") == 3

        await wait_until(three_queued, timeout=10)
        await asyncio.sleep(3 * settings.dispatch_poll_s)
        assert await page_statuses(services, task) == {"queued": 3, "pending": 2}

        connection = await aio_pika.connect(settings.rabbitmq_url.get_secret_value())
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            for _ in range(2):
                message = await get_message(channel, settings.pages_queue)
                page = orjson.loads(message.body)
                result = {**page, "status": "done", "text": "x"}
                del result["image_base64"]
                await channel.default_exchange.publish(
                    aio_pika.Message(orjson.dumps(result), content_type="application/json"),
                    routing_key=settings.results_queue,
                )

            async def all_out() -> bool:
                statuses = await page_statuses(services, task)
                return statuses == {"done": 2, "queued": 3}

            await wait_until(all_out, timeout=10)


# ---------------------------------------------------------------- a real worker


@needs_ocr
async def test_a_busy_worker_takes_a_task_page_next(services: Components) -> None:
    """One worker (prefetch 1) busy with 1,000 tiny batch pages already in the queue: the
    task page published meanwhile is the next page it takes."""
    dispatcher = services.dispatcher
    assert dispatcher is not None
    target = (services.storage, services.sessions)
    (batch,) = await seed_pages(target, 1, 1000)
    await services.control.start_job(batch)

    async def batch_queued() -> bool:
        return (await page_statuses(services, batch)).get("queued") == 1000

    await wait_until(batch_queued, timeout=60)
    try:
        async with worker_process(services.settings, grace=None) as worker:
            await worker.wait_for("ocr finished", count=5)
            task = await seed_task(services)
            published = dispatcher.published
            await request_job(services, task)

            async def task_confirmed() -> bool:
                return dispatcher.published > published

            await wait_until(task_confirmed, timeout=10, interval=0.001)
            started_before = len(worker.matching("ocr started"))
            await worker.wait_for(f"ocr started job_id={task}", timeout=60)
            starts = worker.matching("ocr started")
            task_at = next(i for i, line in enumerate(starts) if str(task) in line)
            await worker.wait_for(f"ocr finished job_id={task}", timeout=60)

            async def task_done() -> bool:
                return await page_statuses(services, task) == {"done": 1}

            await wait_until(task_done, timeout=30)
            done = (await page_statuses(services, batch)).get("done", 0)
    except LogLineMissing as missing:
        pytest.fail(str(missing))
    batch_between = task_at - started_before
    print(
        f"task page OCR'd after {batch_between} more batch pages; batch pages done by then:"
        f" {done} of 1000"
    )
    # The page the worker held (prefetch 1), and at most one delivered as the task's publish
    # was on its way (or whose log line was read after the task's confirm).
    assert batch_between <= 2
    assert done < 500, "the backlog was far from done"


# ---------------------------------------------------------------- an older pages queue


@pytest.mark.parametrize("arguments", ["none", "max-priority-2"])
async def test_a_pages_queue_declared_otherwise_refuses_the_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, arguments: str
) -> None:
    """A pages queue without x-max-priority (an older gateway's), or with issue 14's maximum of
    2, cannot be redeclared: the gateway refuses to start, with the migration in one message,
    and the queue and its messages are left as they were."""
    name = f"ocr.pages.test-plain-{uuid.uuid4().hex[:8]}"
    url = make_settings(tmp_path).rabbitmq_url.get_secret_value()
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(dead_letter_queue(name), durable=True)
        old = queue_arguments(name, max_priority=2 if arguments != "none" else None)
        await channel.declare_queue(name, durable=True, arguments=old)
        await channel.default_exchange.publish(aio_pika.Message(b"{}"), routing_key=name)
        try:
            with (
                caplog.at_level(logging.ERROR, logger="ocr_gateway.messaging.amqp"),
                pytest.raises(PagesQueueMismatch) as refused,
            ):
                async with isolated_gateway(tmp_path, pages_queue=name):
                    pytest.fail("the gateway started on a pages queue without priority")
            message = str(refused.value)
            assert name in message and "OCR_GATEWAY_PAGES_QUEUE" in message
            assert f"rabbitmqctl delete_queue {name}" in message
            assert [r.getMessage() for r in caplog.records if name in r.getMessage()] == [message]
            # A worker's declaration is refused the same way.
            with pytest.raises(PagesQueueMismatch):
                await declare_pages_queue(await connection.channel(), name)
            assert await queue_depth(await connection.channel(), name) == 1, "left as it was"
        finally:
            for queue in (name, dead_letter_queue(name)):
                await channel.queue_delete(queue)


async def test_the_pages_queue_is_declared_with_its_max_priority(
    services: Components, confirm_channel: AbstractChannel
) -> None:
    """The gateway's declaration and a worker's agree: declaring again with the contract's
    arguments succeeds, without them the broker refuses (406)."""
    name = services.settings.pages_queue
    declared = await declare_pages_queue(confirm_channel, name)
    assert declared.prioritized
    assert queue_arguments(name, max_priority=PAGES_MAX_PRIORITY)["x-max-priority"] == 10
    with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed):
        await confirm_channel.declare_queue(name, durable=True, arguments=queue_arguments(name))
