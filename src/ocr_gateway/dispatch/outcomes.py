"""Recording publish outcomes: confirmed pages become `queued`, the rest go back or fail.

A flush takes the settled lists whole (the single owner of its batch), writes them in one
transaction of set-wise updates, and puts them back if the database refuses, for the next try.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from ocr_gateway.db.engine import SessionFactory
from ocr_gateway.dispatch import repository as repo

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.2
FINAL_FLUSH_DELAYS_S = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0)


@dataclass(slots=True)
class Outcomes:
    """Settled publishes waiting to be written; a flush takes the lists whole (single owner)."""

    confirmed: list[int] = field(default_factory=list)
    unconfirmed: list[int] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)


class OutcomeRecorder:
    """Writes a session's outcomes; `held` is the dispatcher's set of pages it holds, from
    which every recorded page is removed (so its lease is no longer renewed)."""

    def __init__(self, sessions: SessionFactory, held: set[int]) -> None:
        self.sessions = sessions
        self._held = held
        self._flush_lock = asyncio.Lock()

    async def flush_periodically(self, outcomes: Outcomes) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            try:
                await self.flush(outcomes)
            except Exception as exc:
                log.warning("recording publish outcomes failed, will retry: %s", exc)

    async def flush_until_written(self, outcomes: Outcomes) -> None:
        """Final flush of a session; retried until the DB takes it (leases cover a crash)."""
        for delay in FINAL_FLUSH_DELAYS_S:
            await asyncio.sleep(delay)
            try:
                await self.flush(outcomes)
                return
            except Exception as exc:
                log.warning("recording publish outcomes failed: %s", exc)
        # Stop renewing their leases, so that expiry really does return them to pending.
        self._held.difference_update(
            {*outcomes.confirmed, *outcomes.unconfirmed, *outcomes.missing}
        )
        log.error("publish outcomes not recorded; their leases will return them to pending")

    async def flush(self, outcomes: Outcomes) -> None:
        async with self._flush_lock:
            confirmed, outcomes.confirmed = outcomes.confirmed, []
            unconfirmed, outcomes.unconfirmed = outcomes.unconfirmed, []
            missing, outcomes.missing = outcomes.missing, []
            if not (confirmed or unconfirmed or missing):
                return
            try:
                async with self.sessions.begin() as session:
                    await repo.mark_pages_queued(session, confirmed)
                    await repo.release_pages(session, unconfirmed)
                    await repo.fail_pages(session, missing, "the page image is missing")
            except BaseException:
                outcomes.confirmed[:0] = confirmed
                outcomes.unconfirmed[:0] = unconfirmed
                outcomes.missing[:0] = missing
                raise
            self._held.difference_update(confirmed)
            self._held.difference_update(unconfirmed)
            self._held.difference_update(missing)
