"""Per-worker throughput: each results consumer counts the results it stores by worker and
minute, and adds its counts to `worker_throughput` every few seconds, in one statement.

Counting in memory keeps the results path as fast as before (no statement per result); a
crash loses at most the last few seconds of counts, which are statistics, not results.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections import Counter

from ocr_gateway.db.engine import SessionFactory
from ocr_gateway.monitor import repository as repo

log = logging.getLogger(__name__)

FLUSH_EVERY_S = 5.0
UNNAMED_WORKER = "unnamed"


class ThroughputRecorder:
    def __init__(self, sessions: SessionFactory) -> None:
        self.sessions = sessions
        self._counts: Counter[tuple[dt.datetime, str, str]] = Counter()

    def count(self, worker: str | None, status: str) -> None:
        minute = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
        self._counts[(minute, worker or UNNAMED_WORKER, status)] += 1

    async def flush(self) -> None:
        if not self._counts:
            return
        counts, self._counts = self._counts, Counter()
        try:
            async with self.sessions.begin() as session:
                await repo.add_worker_counts(session, counts)
        except Exception as exc:
            # Kept for the next flush; the database may be back by then.
            log.warning("worker throughput not recorded yet: %s", exc)
            self._counts.update(counts)

    async def run(self) -> None:
        """Flush every FLUSH_EVERY_S until cancelled, then once more."""
        try:
            while True:
                await asyncio.sleep(FLUSH_EVERY_S)
                await self.flush()
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.flush())
