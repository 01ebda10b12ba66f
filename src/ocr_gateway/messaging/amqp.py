"""The RabbitMQ side: one robust connection, queue declarations, confirmed publishes.

Queue arguments are part of the contract with the workers (they declare the same queues), so
they live in `queue_arguments` and nowhere else: a mismatch makes RabbitMQ refuse the declare.

The pages queue is a priority queue (`x-max-priority`, `PAGES_MAX_PRIORITY`): a task's pages are
published with a higher AMQP priority and every consumer of the queue gets them before batch
pages (docs/worker.md, "Priority"). A pages queue declared before that, without the argument,
cannot be changed in place: `declare_pages_queue` then warns once, with the migration, and
uses the queue as it is, without priority.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from aio_pika.exceptions import ChannelPreconditionFailed
from pamqp.commands import Basic

from ocr_gateway.core.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

DEAD_LETTER_SUFFIX = ".dead"
CONNECT_TIMEOUT_S = 10.0
# The pages queue's `x-max-priority`. Batch pages go out at 0 and a task's at 1
# (`tasks.TASK_PRIORITY`); 2 is spare, so that one more class of pages can be added without
# migrating every deployment's queue. RabbitMQ keeps a sub-queue per level, so few levels.
PAGES_MAX_PRIORITY = 2


class PublishFailed(Exception):
    """The broker did not confirm a message (nack, unroutable, timeout, connection lost)."""


def dead_letter_queue(name: str) -> str:
    return f"{name}{DEAD_LETTER_SUFFIX}"


def queue_arguments(name: str, *, max_priority: int | None = None) -> dict[str, Any]:
    """Messages rejected without requeue go to `<name>.dead` instead of being lost or looping;
    with `max_priority`, a priority queue (the pages queue: `PAGES_MAX_PRIORITY`)."""
    arguments: dict[str, Any] = {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": dead_letter_queue(name),
    }
    if max_priority is not None:
        arguments["x-max-priority"] = max_priority
    return arguments


async def declare_queue(channel: AbstractChannel, name: str) -> AbstractQueue:
    """Declare a durable work queue and its durable dead-letter queue (the results queue; the
    pages queue is declared by `declare_pages_queue`)."""
    await channel.declare_queue(dead_letter_queue(name), durable=True)
    return await channel.declare_queue(name, durable=True, arguments=queue_arguments(name))


@dataclass(frozen=True, slots=True)
class PagesQueue:
    queue: AbstractQueue
    # False when the queue existed without `x-max-priority`: its messages keep their order.
    prioritized: bool


_warned_unprioritized: set[str] = set()


async def declare_pages_queue(channel: AbstractChannel, name: str) -> PagesQueue:
    """Declare the pages queue (durable, dead-lettered, `x-max-priority`) and its dead-letter
    queue; the gateway and every worker declare it so.

    A queue that exists without `x-max-priority` (declared by an older gateway or worker) makes
    RabbitMQ refuse the declare with 406 PRECONDITION_FAILED, which closes the channel. Then
    this warns once per process, saying how to migrate, waits for the channel to be open again,
    and takes the queue as it is (a passive declare): pages are published and consumed as
    before, without priority, instead of a process that cannot start.
    """
    await channel.declare_queue(dead_letter_queue(name), durable=True)
    arguments = queue_arguments(name, max_priority=PAGES_MAX_PRIORITY)
    try:
        queue = await channel.declare_queue(name, durable=True, arguments=arguments)
        return PagesQueue(queue, prioritized=True)
    except ChannelPreconditionFailed as exc:
        if name not in _warned_unprioritized:
            _warned_unprioritized.add(name)
            log.warning(
                "pages queue %s exists without x-max-priority=%d (%s): task pages are published"
                " without priority and wait behind batch pages. To migrate: DELETE"
                " /api/v1/admin/delete/queue (stops publishing, purges the queue, its pages go"
                " back to pending), stop the workers, `rabbitmqctl delete_queue %s`, restart"
                " the gateway and the workers (they declare it with priority), then start"
                " publishing again (docs/worker.md, Priority)",
                name,
                PAGES_MAX_PRIORITY,
                exc,
                name,
            )
    await _open_again(channel)
    queue = await channel.declare_queue(name, passive=True)
    return PagesQueue(queue, prioritized=False)


async def _open_again(channel: AbstractChannel) -> None:
    """After the broker closed a channel over a refused declare: a robust channel reopens by
    itself (reopening it here too would race that), a plain one is reopened here."""
    if not isinstance(channel, AbstractRobustChannel):
        if channel.is_closed:
            await channel.reopen()
        return
    reopened = asyncio.Event()

    def on_reopen(_: AbstractRobustChannel | None, /) -> None:
        reopened.set()

    channel.reopen_callbacks.add(on_reopen)
    try:
        if channel.is_closed:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await reopened.wait()
    finally:
        channel.reopen_callbacks.discard(on_reopen)


async def reopen_if_closed(channel: AbstractChannel, lock: asyncio.Lock) -> AbstractChannel:
    """The channel, reopened first if something closed it (aiormq closes a channel whose RPC
    was cancelled mid-flight)."""
    if channel.is_closed:
        async with lock:
            if channel.is_closed:
                log.warning("broker channel was closed; reopening it")
                await channel.reopen()
    return channel


async def publish_confirmed(
    open_channel: Callable[[], Awaitable[AbstractChannel]],
    routing_key: str,
    body: bytes,
    *,
    message_id: str,
    timeout: float,
    priority: int | None = None,
) -> None:
    """Publish a persistent JSON message through the default exchange and wait for the broker's
    confirm; raise PublishFailed on a nack, an unroutable message, a lost connection or the
    timeout (which also bounds a publish caught in a reconnect, where it would wait forever).
    `priority` is the AMQP priority (a priority queue delivers higher ones first)."""
    message = aio_pika.Message(
        body,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message_id,
        priority=priority,
    )
    try:
        async with asyncio.timeout(timeout):
            channel = await open_channel()
            confirmation = await channel.default_exchange.publish(
                message, routing_key=routing_key, mandatory=True, timeout=timeout
            )
    except TimeoutError as exc:
        raise PublishFailed(f"no confirm within {timeout:.0f}s") from exc
    except Exception as exc:
        raise PublishFailed(f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(confirmation, Basic.Ack):
        raise PublishFailed(f"broker answered {type(confirmation).__name__}")


async def queue_depth(channel: AbstractChannel, name: str) -> int:
    """Ready messages in a queue, asked of the broker now.

    A robust channel answers a passive `declare_queue` from its cache, with the count of the
    first declaration, so this goes to the underlying AMQP channel instead.
    """
    underlay = await channel.get_underlay_channel()
    declared = await underlay.queue_declare(name, passive=True)
    return int(declared.message_count or 0)


class Broker:
    """Lazily connected; `ensure_connected` is safe to call from many coroutines.

    Publishing and queue queries use separate channels, and queries are shielded from
    cancellation: aiormq closes a channel whose RPC is cancelled mid-flight (a stop cancels the
    dispatcher at any await), and that must never take the publishing channel down with it.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._query_channel: AbstractChannel | None = None
        self._lock = asyncio.Lock()
        # Whether the pages queue is a priority queue (False: it predates priority).
        self.pages_prioritized = False

    async def ensure_connected(self) -> AbstractRobustConnection:
        if self._connection is not None:
            return self._connection
        async with self._lock:
            if self._connection is None:
                connection = await aio_pika.connect_robust(
                    self.settings.rabbitmq_url.get_secret_value(),
                    timeout=CONNECT_TIMEOUT_S,
                    client_properties={"connection_name": "ocr-gateway"},
                )
                try:
                    publish = await connection.channel(
                        publisher_confirms=True, on_return_raises=True
                    )
                    query = await connection.channel()
                    pages = await declare_pages_queue(query, self.settings.pages_queue)
                    await declare_queue(query, self.settings.results_queue)
                except BaseException:
                    await connection.close()
                    raise
                self._connection = connection
                self._publish_channel = publish
                self._query_channel = query
                self.pages_prioritized = pages.prioritized
                log.info(
                    "broker connected queues=%s,%s pages_priority=%s",
                    self.settings.pages_queue,
                    self.settings.results_queue,
                    pages.prioritized,
                )
            return self._connection

    async def new_channel(self, prefetch: int) -> AbstractChannel:
        connection = await self.ensure_connected()
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        return channel

    async def _open(self, channel: AbstractChannel | None) -> AbstractChannel:
        assert channel is not None
        return await reopen_if_closed(channel, self._lock)

    async def _publishing_channel(self) -> AbstractChannel:
        await self.ensure_connected()
        return await self._open(self._publish_channel)

    async def _query(self, action: Callable[[AbstractChannel], Awaitable[T]]) -> T:
        """Run a queue RPC to completion even if the caller is cancelled meanwhile."""

        async def run() -> T:
            await self.ensure_connected()
            return await action(await self._open(self._query_channel))

        return await asyncio.shield(asyncio.ensure_future(run()))

    async def publish_page(self, body: bytes, *, message_id: str, priority: int = 0) -> None:
        """Publish to the pages queue and wait for the broker's confirm; a page with a priority
        (a task's) carries it as its AMQP priority, unless the queue has none."""
        await publish_confirmed(
            self._publishing_channel,
            self.settings.pages_queue,
            body,
            message_id=message_id,
            timeout=self.settings.publish_timeout_s,
            priority=priority if priority and self.pages_prioritized else None,
        )

    async def pages_depth(self) -> int:
        """Ready messages in the pages queue (not those held unacked by workers)."""
        return await self._query(lambda channel: queue_depth(channel, self.settings.pages_queue))

    async def purge_pages(self) -> int:
        async def purge(channel: AbstractChannel) -> int:
            underlay = await channel.get_underlay_channel()
            result = await underlay.queue_purge(self.settings.pages_queue)
            return int(result.message_count or 0)

        return await self._query(purge)

    async def check(self) -> tuple[bool, str]:
        try:
            depth = await asyncio.wait_for(self.pages_depth(), 3.0)
        except Exception as exc:
            return False, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return True, f"{self.settings.pages_queue} holds {depth} ready messages"

    async def close(self) -> None:
        async with self._lock:
            if self._connection is not None:
                await self._connection.close()
                self._connection = None
                self._publish_channel = None
                self._query_channel = None
