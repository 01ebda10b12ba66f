"""Cancel racing a running dispatch: no cancelled page is published after the cancel returns.

The broker link is held while pages are on the wire, so that the cancel arrives with publishes
in flight (claimed, sent, unconfirmed) and with batches claimed and waiting in memory; a task
lets the link go a moment later, so those publishes settle while the cancel waits for them.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import orjson
import pytest
from aio_pika.abc import AbstractChannel
from sqlalchemy import text

from ocr_gateway.messaging.amqp import queue_depth
from tests.support.gateway import Gateway, drain, isolated_gateway, page_counts, seed_pages
from tests.support.proxy import FaultProxy
from tests.support.waiting import wait_until

PAGES = 2000
HOLD_AT_DEPTH = 100  # messages in the queue when the link is held: publishing is under way
HELD_FOR_S = 1.0
AFTER_RETURN_S = 3.0  # how long the test watches for a late message


async def _statuses(gateway: Gateway, job_id: uuid.UUID) -> dict[int, str]:
    async with gateway.services.sessions() as session:
        rows = await session.execute(
            text("SELECT page_number, status FROM pages WHERE job_id = :job_id"),
            {"job_id": job_id},
        )
        return {row.page_number: row.status for row in rows}


async def _release_later(link: FaultProxy) -> None:
    await asyncio.sleep(HELD_FOR_S)
    link.release()


@pytest.mark.parametrize("mode", ["manual", "auto"])
async def test_no_cancelled_page_is_published_after_the_cancel_returns(
    tmp_path: Path, channel: AbstractChannel, mode: str
) -> None:
    link = FaultProxy("127.0.0.1", 5672)
    await link.start()
    try:
        # A publish held through the cancel must be confirmed, not time out: a timed-out
        # publish may still reach the broker, which is delivery at least once, not this race.
        async with isolated_gateway(
            tmp_path, amqp_port=link.port, publish_timeout_s=30.0, dispatch_mode=mode
        ) as gateway:
            await _cancel_mid_publish(gateway, link, channel, mode)
    finally:
        await link.close()


async def _cancel_mid_publish(
    gateway: Gateway, link: FaultProxy, channel: AbstractChannel, mode: str
) -> None:
    queue = gateway.settings.pages_queue
    [job_id] = await seed_pages(gateway, jobs=1, pages=PAGES)
    if mode == "manual":
        assert (await gateway.client.post("/admin/start")).status_code == 202

    async def publishing_under_way() -> bool:
        return await queue_depth(channel, queue) >= HOLD_AT_DEPTH

    await wait_until(publishing_under_way, timeout=60, interval=0.005)
    link.hold()
    before = await page_counts(gateway.services)
    assert before.get("publishing", 0) > 0, f"no publish in flight at the cancel: {before}"
    assert before.get("pending", 0) > 0, f"everything was sent before the cancel: {before}"

    releaser = asyncio.create_task(_release_later(link))
    started = asyncio.get_running_loop().time()
    cancelled = await gateway.client.post(f"/jobs/{job_id}/cancel")
    in_queue_at_return = await queue_depth(channel, queue)
    waited = asyncio.get_running_loop().time() - started
    await releaser
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert waited >= HELD_FOR_S * 0.9, "the cancel returned before its publishes settled"

    await asyncio.sleep(AFTER_RETURN_S)
    bodies = await drain(channel, queue)
    published = [orjson.loads(body)["page_number"] for body in bodies]
    statuses = await _statuses(gateway, job_id)
    assert len(published) == in_queue_at_return, "a page was published after the cancel returned"
    assert len(set(published)) == len(published), "a page was published twice"
    # Every page not done is cancelled: those never sent, and those sent before the cancel
    # returned (their late results are dropped); none is left pending or publishing.
    assert set(statuses.values()) == {"cancelled"}, statuses
    assert cancelled.json()["cancelled_pages"] == PAGES
    assert 0 < len(published) < PAGES
