"""One listener per API process, waking the readers of a job when its events are recorded.

The record is the table: a reader always gets its events from `job_events`, after the last id
it has seen, so a dropped connection, a restart or another replica loses nothing. NOTIFY only
says "look now". To keep that cheap with many readers, the hub loads each job's new events once
per wake-up into a small window that all the job's readers share, and a reader whose place is
older than the window reads the table itself. A slow reader holds nothing up: it reads at its
own pace, and the hub never waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator

from ocr_gateway.core.settings import Settings
from ocr_gateway.db.engine import SessionFactory
from ocr_gateway.db.listen import listen_forever
from ocr_gateway.events import repository as repo
from ocr_gateway.events.types import JobEventOut

log = logging.getLogger(__name__)

WINDOW = 512
HEARTBEAT_S = 15.0
# A wake-up missed while the listener reconnects is covered by this periodic look.
POLL_S = 5.0
RECONNECT_S = 1.0


class _Feed:
    """One job's recent events in this process, and a signal for its readers.

    The window holds every event of the job with an id above `window_from` (ids are shared by
    all jobs, so a job's ids have gaps: completeness is tracked, not inferred).
    """

    __slots__ = ("changed", "loaded_to", "readers", "refreshing", "window", "window_from")

    def __init__(self, loaded_to: int) -> None:
        self.window: deque[JobEventOut] = deque()
        self.window_from = loaded_to
        self.loaded_to = loaded_to
        self.changed = asyncio.Event()
        self.readers = 0
        self.refreshing: asyncio.Task[None] | None = None

    def append(self, event: JobEventOut) -> None:
        assert event.id is not None
        if len(self.window) == WINDOW:
            dropped = self.window.popleft()
            self.window_from = dropped.id or self.window_from
        self.window.append(event)
        self.loaded_to = max(self.loaded_to, event.id)

    def after(self, cursor: int) -> list[JobEventOut] | None:
        """The events after `cursor` from the window, or None if the window starts later."""
        if cursor < self.window_from:
            return None
        return [event for event in self.window if event.id is not None and event.id > cursor]

    def wake(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class EventHub:
    def __init__(self, settings: Settings, sessions: SessionFactory) -> None:
        self.settings = settings
        self.sessions = sessions
        self._feeds: dict[uuid.UUID, _Feed] = {}

    # ------------------------------------------------------------ readers

    async def follow(
        self, job_id: uuid.UUID, after: int = 0, *, heartbeat_s: float = HEARTBEAT_S
    ) -> AsyncIterator[JobEventOut | None]:
        """The job's events after id `after`, as they are recorded, until a terminal one;
        None every `heartbeat_s` without an event."""
        feed = await self._open(job_id)
        try:
            cursor = after
            while True:
                changed = feed.changed
                batch = feed.after(cursor)
                if batch is None:
                    async with self.sessions() as session:
                        batch = list(await repo.events_after(session, job_id, cursor))
                for event in batch:
                    yield event
                    cursor = event.id or cursor
                    if event.type.terminal:
                        return
                if batch:
                    continue
                try:
                    async with asyncio.timeout(heartbeat_s):
                        await changed.wait()
                except TimeoutError:
                    yield None
        finally:
            self._close(job_id, feed)

    def readers(self, job_id: uuid.UUID) -> int:
        """How many readers follow the job in this process now."""
        feed = self._feeds.get(job_id)
        return feed.readers if feed is not None else 0

    async def last_id(self, job_id: uuid.UUID) -> int:
        """The id of the job's latest event (0 if none): where a new reader starts."""
        async with self.sessions() as session:
            return await repo.last_event_id(session, job_id)

    async def wait_for_change(self, job_id: uuid.UUID, after: int, timeout: float) -> bool:
        """Wait up to `timeout` for an event after id `after`; True if one came."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                async for event in self.follow(job_id, after, heartbeat_s=timeout + 1):
                    if event is not None:
                        return True
        return False

    async def _open(self, job_id: uuid.UUID) -> _Feed:
        feed = self._feeds.get(job_id)
        if feed is None:
            async with self.sessions() as session:
                loaded_to = await repo.last_event_id(session, job_id)
            if job_id not in self._feeds:
                self._feeds[job_id] = _Feed(loaded_to)
                # An event recorded between that query and this feed's birth was announced to
                # no feed: look once now.
                self._refresh(job_id)
            feed = self._feeds[job_id]
        feed.readers += 1
        return feed

    def _close(self, job_id: uuid.UUID, feed: _Feed) -> None:
        feed.readers -= 1
        if feed.readers <= 0 and self._feeds.get(job_id) is feed:
            del self._feeds[job_id]
            if feed.refreshing is not None:
                feed.refreshing.cancel()

    # ------------------------------------------------------------ loading

    def _refresh(self, job_id: uuid.UUID) -> None:
        """Load the job's new events once, however many readers and notifications there are."""
        feed = self._feeds.get(job_id)
        if feed is None:
            return
        if feed.refreshing is not None and not feed.refreshing.done():
            feed.refreshing.add_done_callback(lambda _t: self._refresh(job_id))
            return
        feed.refreshing = asyncio.get_running_loop().create_task(self._load(job_id, feed))

    async def _load(self, job_id: uuid.UUID, feed: _Feed) -> None:
        try:
            async with self.sessions() as session:
                fresh = await repo.events_after(session, job_id, feed.loaded_to)
        except Exception as exc:
            log.warning("loading events failed job_id=%s: %s", job_id, exc)
            fresh = []
        for event in fresh:
            if event.id is not None and event.id > feed.loaded_to:
                feed.append(event)
        # Readers look even when nothing was loaded: one may read the table itself.
        feed.wake()

    def refresh_all(self) -> None:
        for job_id in list(self._feeds):
            self._refresh(job_id)

    # ------------------------------------------------------------ listening

    async def listen(self) -> None:
        """LISTEN on one connection of its own; after a reconnect, every feed catches up."""
        await listen_forever(
            self.settings.sync_database_url,
            repo.NOTIFY_CHANNEL,
            self._on_notify,
            ping_s=POLL_S,
            what="event listener",
            on_connected=self.refresh_all,
            on_ping=self.refresh_all,
        )

    def _on_notify(self, payload: str) -> None:
        if payload == repo.EVERY_JOB:
            self.refresh_all()
            return
        try:
            job_id = uuid.UUID(payload)
        except ValueError:
            return
        self._refresh(job_id)
