"""The pure pieces of task priority: claim limits at and under the high-water mark, the pages
queue's arguments, page bodies carrying their priority, and what a publish sends."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aio_pika.abc import AbstractChannel

from ocr_gateway.core.settings import Settings
from ocr_gateway.dispatch.bodies import Outgoing, PageBodies
from ocr_gateway.dispatch.flow import ClaimLimits, claim_ahead, claim_limits, claim_size
from ocr_gateway.dispatch.repository import ClaimedPage
from ocr_gateway.dispatch.schemas import MAX_JOB_PRIORITY
from ocr_gateway.messaging import amqp
from ocr_gateway.messaging.amqp import PAGES_MAX_PRIORITY, Broker, queue_arguments
from ocr_gateway.messaging.contracts import encode_page_message
from ocr_gateway.storage.local import LocalStore
from ocr_gateway.tasks import TASK_PRIORITY

AHEAD = claim_ahead(32, 16)  # 64


@pytest.mark.parametrize(
    ("room", "unsent", "limits"),
    [
        (1000, 0, ClaimLimits(64, 64)),
        (10, 0, ClaimLimits(64, 10)),  # little room: batch pages fill it, tasks the rest
        (0, 0, ClaimLimits(64, 0)),  # at the high-water mark: task pages only
        (-500, 0, ClaimLimits(64, 0)),  # far over it (a backlog from elsewhere)
        (1000, 40, ClaimLimits(24, 24)),
        (0, 40, ClaimLimits(24, 0)),
        (1000, 50, ClaimLimits(0, 0)),  # less than a prepare batch may be claimed: none
    ],
)
def test_claim_limits(room: int, unsent: int, limits: ClaimLimits) -> None:
    assert claim_limits(256, room, AHEAD, unsent, 16) == limits


def test_batch_limits_are_the_claim_sizes_of_before_and_tasks_only_pass_the_room() -> None:
    for batch, room, unsent in itertools.product((1, 16, 256), (-5, 0, 7, 64, 5000), (0, 17, 64)):
        limits = claim_limits(batch, room, AHEAD, unsent, 16)
        assert limits.batch == claim_size(batch, room, AHEAD, unsent, 16)
        assert limits.batch <= limits.total <= min(batch, AHEAD - unsent)
        assert limits.total == claim_size(batch, AHEAD, AHEAD, unsent, 16)


def test_the_pages_queue_is_a_small_priority_queue_above_the_tasks_priority() -> None:
    arguments = queue_arguments("ocr.pages", max_priority=PAGES_MAX_PRIORITY)
    assert arguments == {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "ocr.pages.dead",
        "x-max-priority": PAGES_MAX_PRIORITY,
    }
    # A task is above every job's priority (0-9), and the queue's maximum is the task's.
    assert TASK_PRIORITY == PAGES_MAX_PRIORITY == MAX_JOB_PRIORITY + 1 == 10
    assert "x-max-priority" not in queue_arguments("ocr.results")


async def test_prepared_bodies_keep_their_pages_priority(tmp_path: Path) -> None:
    job = uuid.uuid4()
    png = b"\x89PNG fake"
    for number in (1, 2):
        (tmp_path / str(job)).mkdir(exist_ok=True)
        (tmp_path / str(job) / f"{number}.png").write_bytes(png)
    batch = ClaimedPage(1, job, 1, "")
    task = ClaimedPage(2, job, 2, "", priority=TASK_PRIORITY)
    bodies = PageBodies(Settings(files_dir=tmp_path, _env_file=None), LocalStore(tmp_path))
    try:
        prepared = await bodies.prepare([task, batch])
    finally:
        bodies.close()

    assert prepared == [
        Outgoing(2, f"{job}:2", encode_page_message(job, 2, png), TASK_PRIORITY),
        Outgoing(1, f"{job}:1", encode_page_message(job, 1, png), 0),
    ]


@pytest.mark.parametrize(
    ("priority", "sent"),
    [
        (TASK_PRIORITY, TASK_PRIORITY),
        (9, 9),
        (1, 1),
        (0, None),  # priority 0 pages carry no priority property (the queue's default)
    ],
)
async def test_a_page_is_published_with_its_priority(
    monkeypatch: pytest.MonkeyPatch, priority: int, sent: int | None
) -> None:
    calls: list[dict[str, Any]] = []

    async def publish_confirmed(
        open_channel: Callable[[], Awaitable[AbstractChannel]],
        routing_key: str,
        body: bytes,
        **options: Any,
    ) -> None:
        calls.append({"routing_key": routing_key, **options})

    monkeypatch.setattr(amqp, "publish_confirmed", publish_confirmed)
    broker = Broker(Settings(_env_file=None, pages_queue="ocr.pages", publish_timeout_s=15.0))

    await broker.publish_page(b"{}", message_id="j:1", priority=priority)

    assert calls == [
        {"routing_key": "ocr.pages", "message_id": "j:1", "timeout": 15.0, "priority": sent}
    ]


def test_the_refusal_names_the_migration() -> None:
    message = amqp.pages_queue_migration("ocr.pages", "PRECONDITION_FAILED")
    assert "OCR_GATEWAY_PAGES_QUEUE" in message
    assert "rabbitmqctl delete_queue ocr.pages" in message
    assert "x-max-priority=10" in message
    assert "docs/worker.md" in message
