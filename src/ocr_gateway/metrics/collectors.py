"""The gauges read from PostgreSQL and RabbitMQ: at most once per `metrics_refresh_s`.

A scrape awaits `refresh()` before it renders the registry; within the refresh interval it
returns at once with the values of the last read, so a scraper every second, or ten
Prometheus servers, cost one `GROUP BY` and one passive queue declare per interval. Reads are
serialised, so scrapes that arrive together wait for one read rather than each making theirs.
A read that fails (the broker down) keeps the last values and is logged; a scrape never fails
because of it.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ocr_gateway.core.settings import Settings
from ocr_gateway.db.engine import SessionFactory
from ocr_gateway.db.models import PageStatus
from ocr_gateway.messaging.amqp import Broker
from ocr_gateway.metrics import registry
from ocr_gateway.metrics.repository import count_pages_by_status

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 3.0


class StateGauges:
    """Pages by status and the pages queue's depth and consumers, cached for the interval."""

    def __init__(self, settings: Settings, sessions: SessionFactory, broker: Broker) -> None:
        self.interval_s = settings.metrics_refresh_s
        self.sessions = sessions
        self.broker = broker
        self.pages_queue = settings.pages_queue
        self.refreshed_at: float | None = None  # monotonic time of the last read
        self.refreshes = 0
        self._lock = asyncio.Lock()

    def fresh(self) -> bool:
        return (
            self.refreshed_at is not None and time.monotonic() - self.refreshed_at < self.interval_s
        )

    async def refresh(self) -> None:
        """Read the database and the broker unless the last read is younger than the interval."""
        if self.fresh():
            return
        async with self._lock:
            if self.fresh():  # another scrape read them while this one waited
                return
            self.refreshed_at = time.monotonic()
            self.refreshes += 1
            registry.REFRESHES.inc()
            registry.REFRESHED_AT.set(time.time())
            await asyncio.gather(self._read_pages(), self._read_queue())

    async def _read_pages(self) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT_S), self.sessions() as session:
                counts = await count_pages_by_status(session)
        except Exception as exc:
            log.warning("metrics: pages by status not read: %s: %s", type(exc).__name__, exc)
            return
        for status in PageStatus:
            registry.PAGES.labels(status=status.value).set(counts.get(status.value, 0))

    async def _read_queue(self) -> None:
        try:
            messages, consumers = await asyncio.wait_for(
                self.broker.queue_counts(self.pages_queue), READ_TIMEOUT_S
            )
        except Exception as exc:
            log.warning("metrics: pages queue not read: %s: %s", type(exc).__name__, exc)
            return
        registry.PAGES_QUEUE_MESSAGES.set(messages)
        registry.PAGES_QUEUE_CONSUMERS.set(consumers)
