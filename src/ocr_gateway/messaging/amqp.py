"""The RabbitMQ side: one robust connection, queue declarations, confirmed publishes.

Queue arguments are part of the contract with the workers (they declare the same queues), so
they live in `queue_arguments` and nowhere else: a mismatch makes RabbitMQ refuse the declare.

The pages queue is a priority queue (`x-max-priority`, `PAGES_MAX_PRIORITY`): a page is
published with its job's priority (0-9, a task's 10) and every consumer of the queue gets the
higher ones first (docs/worker.md, "Priority"). A pages queue declared otherwise (without the
argument, or with another maximum) cannot be changed in place: `declare_pages_queue` then
refuses with `PagesQueueMismatch`, whose message says how to migrate, and the process does not
start, rather than publish priorities that the queue would ignore.
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
    AbstractRobustConnection,
)
from aio_pika.exceptions import ChannelPreconditionFailed
from pamqp.commands import Basic

from ocr_gateway.core.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

DEAD_LETTER_SUFFIX = ".dead"
CONNECT_TIMEOUT_S = 10.0
# The pages queue's `x-max-priority`: a job's priority 0-9 and a task's 10
# (`tasks.TASK_PRIORITY`). RabbitMQ keeps a sub-queue per level; 11 levels cost little.
PAGES_MAX_PRIORITY = 10


class PagesQueueMismatch(RuntimeError):
    """The pages queue exists with other arguments than `queue_arguments` gives it (an older
    gateway's, without `x-max-priority`): it cannot be redeclared, and is not used as it is."""


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
    # Always True: a queue without priority is refused (`PagesQueueMismatch`).
    prioritized: bool = True


def pages_queue_migration(name: str, reason: object) -> str:
    """The refusal's message: what is wrong, and the migration (docs/worker.md, Priority)."""
    return (
        f"pages queue {name} exists with other arguments than x-max-priority={PAGES_MAX_PRIORITY}"
        f" ({reason}); RabbitMQ cannot change a queue's arguments. Migrate: set"
        f" OCR_GATEWAY_PAGES_QUEUE to a new name (e.g. {name}.p{PAGES_MAX_PRIORITY}) on the"
        " gateway, the dispatchers and the workers, restart them (they declare the new queue with"
        f" priority), keep one old worker on {name} until it is empty, then"
        f" `rabbitmqctl delete_queue {name}` (docs/worker.md, Priority)"
    )


async def declare_pages_queue(channel: AbstractChannel, name: str) -> PagesQueue:
    """Declare the pages queue (durable, dead-lettered, `x-max-priority`) and its dead-letter
    queue; the gateway, every dispatcher and every worker declare it so.

    A queue that exists with other arguments (declared by an older gateway or worker, without
    `x-max-priority`) makes RabbitMQ refuse the declare with 406 PRECONDITION_FAILED, which
    closes the channel: this raises `PagesQueueMismatch`, with the migration in its message.
    """
    await channel.declare_queue(dead_letter_queue(name), durable=True)
    arguments = queue_arguments(name, max_priority=PAGES_MAX_PRIORITY)
    try:
        queue = await channel.declare_queue(name, durable=True, arguments=arguments)
    except ChannelPreconditionFailed as exc:
        raise PagesQueueMismatch(pages_queue_migration(name, exc)) from exc
    return PagesQueue(queue)


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
        # Set once the pages queue was refused: every later call raises it again at once.
        self._refused: PagesQueueMismatch | None = None

    async def ensure_connected(self) -> AbstractRobustConnection:
        if self._connection is not None:
            return self._connection
        if self._refused is not None:
            raise self._refused
        async with self._lock:
            if self._refused is not None:
                raise self._refused
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
                    await declare_pages_queue(query, self.settings.pages_queue)
                    await declare_queue(query, self.settings.results_queue)
                except PagesQueueMismatch as refused:
                    self._refused = refused
                    log.error("%s", refused)
                    await connection.close()
                    raise
                except BaseException:
                    await connection.close()
                    raise
                self._connection = connection
                self._publish_channel = publish
                self._query_channel = query
                log.info(
                    "broker connected queues=%s,%s pages_max_priority=%d",
                    self.settings.pages_queue,
                    self.settings.results_queue,
                    PAGES_MAX_PRIORITY,
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
        (its job's 1-9, a task's 10) carries it as its AMQP priority, a page of priority 0 none
        (the queue's default)."""
        await publish_confirmed(
            self._publishing_channel,
            self.settings.pages_queue,
            body,
            message_id=message_id,
            timeout=self.settings.publish_timeout_s,
            priority=priority or None,
        )

    async def pages_depth(self) -> int:
        """Ready messages in the pages queue (not those held unacked by workers)."""
        return await self._query(lambda channel: queue_depth(channel, self.settings.pages_queue))

    async def queue_counts(self, name: str) -> tuple[int, int]:
        """A queue's ready messages and consumers, by a passive declare (the monitoring page)."""

        async def counts(channel: AbstractChannel) -> tuple[int, int]:
            underlay = await channel.get_underlay_channel()
            declared = await underlay.queue_declare(name, passive=True)
            return int(declared.message_count or 0), int(declared.consumer_count or 0)

        return await self._query(counts)

    async def purge_pages(self) -> int:
        async def purge(channel: AbstractChannel) -> int:
            underlay = await channel.get_underlay_channel()
            result = await underlay.queue_purge(self.settings.pages_queue)
            return int(result.message_count or 0)

        return await self._query(purge)

    async def refuse_mismatched_pages_queue(self) -> None:
        """At start-up: raise `PagesQueueMismatch` if the pages queue cannot be declared with
        priority. A broker that does not answer is no refusal (health reports it, and the
        connection is tried again at first use)."""
        try:
            await asyncio.wait_for(self.ensure_connected(), CONNECT_TIMEOUT_S)
        except PagesQueueMismatch:
            raise
        except Exception as exc:
            log.warning("broker not reachable at start-up: %r", exc)

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
