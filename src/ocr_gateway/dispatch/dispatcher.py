"""Feeding pages to the broker: claim under a lease, publish with confirms, record, stop cleanly.

The state that matters lives in PostgreSQL: a start is a row in `dispatch_requests`, a stop
deletes them all, and a page moves pending → publishing (leased) → queued only after its
confirm. Every app process runs one Dispatcher; NOTIFY wakes them at once and a poll covers a
missed notification, so a stop given to any process halts publishing in all of them.

With `DISPATCH_MODE=auto` a dispatcher adds the start itself, for every page, whenever pages
wait and no operator's stop is in force (the render NOTIFYs as it records pages).

A task's pages (priority > 0) are claimed before batch pages and published with their AMQP
priority. They are not held back by the queue's high-water mark, which a batch backlog may
keep reached for hours, but by their own (`TASK_HIGH_WATER` task pages in flight): a feeder
paused on a full queue still claims them as soon as their start's NOTIFY wakes it.

With a rate limit set (`PUT /admin/dispatch/rate`), each claim first draws its pages from the
token bucket in `dispatch_state` that every dispatcher shares (`draw_rate_tokens`): a claim is
never larger than the pages drawn, and with none to draw the feeder waits until the next one is
due, or until a NOTIFY of a new rate wakes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable

from ocr_gateway.core.settings import Settings
from ocr_gateway.db.engine import SessionFactory
from ocr_gateway.db.listen import listen_forever
from ocr_gateway.dispatch import repository as repo
from ocr_gateway.dispatch.bodies import (
    PREPARE_AHEAD,
    PREPARE_BATCH,
    Outgoing,
    PageBodies,
    release_bodies,
)
from ocr_gateway.dispatch.flow import (
    RATE_BURST_S,
    ClaimLimits,
    backoff_after_failure,
    claim_ahead,
    claim_limits,
    may_claim,
    next_backoff,
    room_in_queue,
)
from ocr_gateway.dispatch.outcomes import OutcomeRecorder, Outcomes
from ocr_gateway.messaging.amqp import Broker, PublishFailed
from ocr_gateway.metrics import registry as metrics
from ocr_gateway.storage import ArtefactStore

log = logging.getLogger(__name__)


async def _settle_despite_cancel(work: Awaitable[object]) -> None:
    """Wait for bounded clean-up work to finish even if cancelled again meanwhile: a stop that
    arrives twice must not abandon a confirm or a flush half-way."""
    future = asyncio.ensure_future(work)
    while not future.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait([future])


class Dispatcher:
    def __init__(
        self, settings: Settings, sessions: SessionFactory, broker: Broker, store: ArtefactStore
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.broker = broker
        self._wake = asyncio.Event()
        # The feeder's own wake-up: the run loop clears `_wake` after each of its rounds, which
        # could swallow a wake-up meant for a feeder not yet waiting (a task's start, at a full
        # queue, then waited a whole poll interval).
        self._feed_wake = asyncio.Event()
        self._session: asyncio.Task[None] | None = None
        self._cancelled: asyncio.Task[None] | None = None
        self._claiming: asyncio.Future[list[repo.ClaimedPage]] | None = None
        self._held: set[int] = set()
        # Pages claimed and not yet published (or found unreadable), and its wake-up.
        self._unsent = 0
        self._sent = asyncio.Event()
        self._recorder = OutcomeRecorder(sessions, self._held)
        self._backoff = 0.0
        # With a rate limit and an empty bucket: how long until the next page may be drawn.
        self._rate_wait = 0.0
        self._stop_requested = False
        # Page bodies from the store, inline or by URL (MESSAGE_IMAGES), on a reader thread.
        self._bodies = PageBodies(settings, store)
        self.published = 0

    # ------------------------------------------------------------ control

    async def close(self) -> None:
        """Halt publishing and let the reader thread go."""
        await self.halt()
        self._bodies.close()

    @property
    def publishing(self) -> bool:
        return self._session is not None and not self._session.done()

    def wake(self) -> None:
        self._wake.set()
        self._feed_wake.set()

    async def halt(self) -> None:
        """Cancel this process's publishers; in-flight publishes settle and are recorded first.

        Many callers may halt at once (the stop route, NOTIFY, the poll): the session is
        cancelled once, and each caller waits through a shield, so a caller that is itself
        cancelled never interrupts the session's own clean-up.
        """
        session = self._session
        if session is None or session.done():
            return
        if self._cancelled is not session:
            self._cancelled = session
            self._stop_requested = True
            session.cancel()
            log.info("publishing stopping")
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(session)

    async def run(self) -> None:
        """Background loop: start a publishing session while starts exist, halt when none do."""
        while True:
            await self._pause()
            self._wake.clear()
            try:
                async with self.sessions.begin() as session:
                    expired = await repo.expire_publish_leases(session)
                    if self._held:
                        await repo.renew_publish_leases(
                            session, list(self._held), lease_s=self.settings.dispatch_lease_s
                        )
                    if self.settings.dispatch_mode == "auto":
                        await repo.add_standing_start(session)
                    active = await repo.has_dispatch_requests(session)
            except Exception as exc:
                log.warning("dispatcher cannot reach the database: %s", exc)
                continue
            if expired:
                log.warning("publish leases expired, pages back to pending count=%d", expired)
            if active and not self.publishing:
                self._stop_requested = False
                self._backoff = 0.0
                self._session = asyncio.create_task(self._publish_session(), name="publishing")
            elif not active and self.publishing:
                await self.halt()

    async def listen(self) -> None:
        """LISTEN for start/stop from any process; reconnects when the database comes back."""
        await listen_forever(
            self.settings.sync_database_url,
            repo.NOTIFY_CHANNEL,
            self._on_notify,
            ping_s=self.settings.dispatch_poll_s,
            what="dispatch listener",
        )

    def _on_notify(self, payload: str) -> None:
        if payload == "stop":
            asyncio.get_running_loop().create_task(self.halt())
        self.wake()

    # ------------------------------------------------------------ publishing

    async def _publish_session(self) -> None:
        outcomes = Outcomes()
        queue: asyncio.Queue[Outgoing | None] = asyncio.Queue(
            maxsize=self.settings.publisher_concurrency * 2
        )
        log.info("publishing started publishers=%d", self.settings.publisher_concurrency)
        try:
            async with asyncio.TaskGroup() as group:
                flusher = group.create_task(self._recorder.flush_periodically(outcomes))
                publishers = [
                    group.create_task(self._publish_loop(queue, outcomes))
                    for _ in range(self.settings.publisher_concurrency)
                ]
                await self._feed(group, queue, outcomes)
                for _ in publishers:
                    await queue.put(None)
                await asyncio.gather(*publishers)
                flusher.cancel()
            log.info("publishing finished: no requested page left")
        except* Exception as errors:
            # The database or broker failed under the feeder; the run loop starts a new
            # session once they answer again, and the final flush below settles this one.
            reasons = "; ".join(f"{type(e).__name__}: {e}" for e in errors.exceptions)
            log.warning("publishing interrupted: %s", reasons)
        finally:
            # Every publish has settled by now; whatever this process still holds and has no
            # confirm for (queued in memory, or claimed and not yet read) goes back to pending.
            if self._claiming is not None:
                await _settle_despite_cancel(self._claiming)
                self._claiming = None
            settled = {*outcomes.confirmed, *outcomes.unconfirmed, *outcomes.missing}
            outcomes.unconfirmed.extend(page for page in self._held if page not in settled)
            await _settle_despite_cancel(self._recorder.flush_until_written(outcomes))
            release_bodies(queue)
            self._unsent = 0
            log.info("publishing session ended; its pages are queued or pending")

    async def _feed(
        self,
        group: asyncio.TaskGroup,
        queue: asyncio.Queue[Outgoing | None],
        outcomes: Outcomes,
    ) -> None:
        """Claim requested pages batch by batch, batch pages within the queue's high-water mark
        and task pages within theirs, and keep up to PREPARE_AHEAD batches of PREPARE_BATCH
        pages being read and encoded.

        Claims stay only `claim_ahead` pages ahead of publishing, so that a tenant whose pages
        arrive while another's backlog publishes is served in the next claim, not after
        hundreds of pages already claimed (the claim shares itself between tenants), and a
        task's pages, claimed first, wait behind at most that many.
        """
        slots = asyncio.Semaphore(PREPARE_AHEAD)
        ahead = claim_ahead(self.settings.publisher_concurrency, PREPARE_BATCH)
        while True:
            # A stop cancels this task; the flag covers a cancellation lost in a race with a
            # wake-up, so a stopped session can never keep feeding or waiting.
            if self._stop_requested:
                raise asyncio.CancelledError
            if self._backoff:
                await asyncio.sleep(self._backoff)
                self._backoff = next_backoff(self._backoff)
            if not may_claim(ahead, self._unsent, PREPARE_BATCH):
                await self._until_sent()
                continue
            # Cleared before the claim: a start that comes during it wakes the pause below.
            self._feed_wake.clear()
            room = await self._room_in_queue()
            if room is None:
                continue  # the broker is unavailable: the backoff above waits
            limits = claim_limits(
                self.settings.dispatch_batch_size, room, ahead, self._unsent, PREPARE_BATCH
            )
            self._claiming = asyncio.ensure_future(self._claim(limits))
            claimed = await asyncio.shield(self._claiming)
            if self._rate_wait:
                # The rate limit's bucket is empty: wait for the next page to be due, or a
                # new rate's NOTIFY (which clears the wait's reason by a fresh draw).
                await self._pause_feed(self._rate_wait)
                continue
            if not claimed and limits.batch <= 0:
                # At the high-water mark: wait for workers to take pages, or a task's start.
                await self._pause_feed()
                continue
            if not claimed:
                async with self.sessions.begin() as session:
                    await repo.retire_satisfied_requests(session)
                    active = await repo.has_dispatch_requests(session)
                if not active:
                    for _ in range(PREPARE_AHEAD):  # every prepared page is in the queue
                        await slots.acquire()
                    return
                await self._pause_feed()
                continue
            for start in range(0, len(claimed), PREPARE_BATCH):
                await slots.acquire()
                batch = claimed[start : start + PREPARE_BATCH]
                group.create_task(self._prepare_into(batch, queue, outcomes, slots))

    async def _prepare_into(
        self,
        batch: list[repo.ClaimedPage],
        queue: asyncio.Queue[Outgoing | None],
        outcomes: Outcomes,
        slots: asyncio.Semaphore,
    ) -> None:
        """Read and encode a batch off the loop and hand its pages to the publishers."""
        try:
            prepared = await self._bodies.prepare(batch)
            for item in prepared:
                if isinstance(item, Outgoing):
                    await queue.put(item)
                    continue
                page, error = item.page, item.error
                if item.missing:
                    log.error(
                        "page image missing job_id=%s page_number=%d", page.job_id, page.page_number
                    )
                    outcomes.missing.append(page.id)
                    self._sent_one()
                else:
                    log.error(
                        "page image unreadable job_id=%s page_number=%d: %s",
                        page.job_id,
                        page.page_number,
                        error,
                    )
                    outcomes.unconfirmed.append(page.id)
                    self._sent_one()
        finally:
            slots.release()

    async def _claim(self, limits: ClaimLimits) -> list[repo.ClaimedPage]:
        """Claim pages and hold them in one step that a stop cannot split: a claim committed
        but not recorded in `_held` would strand its pages until their lease expired."""
        self._rate_wait = 0.0
        async with self.sessions.begin() as session:
            # Drawn in the claim's transaction: the bucket's row stays locked until the claim
            # commits, and the pages drawn but not claimed go back before anyone draws again.
            draw = await repo.draw_rate_tokens(session, want=limits.total, burst_s=RATE_BURST_S)
            if draw.limited:
                if not draw.granted:
                    self._rate_wait = draw.wait_s
                    return []
                limits = ClaimLimits(draw.granted, min(limits.batch, draw.granted))
            claimed = await repo.claim_pages(
                session,
                limit=limits.total,
                batch_limit=limits.batch,
                lease_s=self.settings.dispatch_lease_s,
                task_high_water=self.settings.task_high_water,
            )
            if draw.limited and len(claimed) < draw.granted:
                await repo.return_rate_tokens(session, draw.granted - len(claimed))
        self._held.update(page.id for page in claimed)
        self._unsent += len(claimed)
        return claimed

    def _sent_one(self) -> None:
        """A claimed page has left the pipeline (published, refused, or unreadable)."""
        self._unsent -= 1
        self._sent.set()

    async def _until_sent(self) -> None:
        """Wait until a claimed page has been published (or the poll interval passed)."""
        self._sent.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.dispatch_poll_s):
                await self._sent.wait()

    async def _room_in_queue(self) -> int | None:
        """Room under the high-water mark for batch pages; None if the broker did not answer."""
        try:
            async with asyncio.timeout(self.settings.publish_timeout_s):
                depth = await self.broker.pages_depth()
        except Exception as exc:  # TimeoutError included
            self._broker_unavailable(exc)
            return None
        # Pages this process holds are not in the queue's count yet, but soon will be.
        return room_in_queue(self.settings.queue_high_water, depth, len(self._held))

    def _broker_unavailable(self, exc: BaseException) -> None:
        log.warning("broker unavailable, publishing paused: %r", exc)
        self._backoff = backoff_after_failure(self._backoff)

    async def _pause(self) -> None:
        """Wait for a wake-up or the poll interval. `asyncio.timeout`, not `wait_for`: in
        Python 3.11 `wait_for` can swallow a cancellation that lands with the wake-up."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.dispatch_poll_s):
                await self._wake.wait()

    async def _pause_feed(self, seconds: float | None = None) -> None:
        """The feeder's pause: until a wake-up since its last claim, or the poll interval (or
        `seconds`, if shorter)."""
        wait = self.settings.dispatch_poll_s
        if seconds is not None:
            wait = min(wait, seconds)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self._feed_wake.wait()

    async def _publish_loop(
        self, queue: asyncio.Queue[Outgoing | None], outcomes: Outcomes
    ) -> None:
        while (item := await queue.get()) is not None:
            started = time.perf_counter()
            publish = asyncio.ensure_future(
                self.broker.publish_page(
                    item.body, message_id=item.message_id, priority=item.priority
                )
            )
            try:
                await asyncio.shield(publish)
            except asyncio.CancelledError:
                # A stop: the message may already be at the broker, so wait for its confirm
                # (bounded by the publish timeout) and record it, rather than guess.
                await _settle_despite_cancel(publish)
                self._settle(item, publish, outcomes, started)
                raise
            except PublishFailed:
                pass
            self._settle(item, publish, outcomes, started)

    def _settle(
        self, item: Outgoing, publish: asyncio.Future[None], outcomes: Outcomes, started: float
    ) -> None:
        self._sent_one()
        error = publish.exception()
        metrics.PUBLISH_CONFIRM.observe(time.perf_counter() - started)
        if error is None:
            outcomes.confirmed.append(item.page_id)
            self.published += 1
            metrics.PAGES_PUBLISHED.inc()
            self._backoff = 0.0
        else:
            log.warning("publish not confirmed message_id=%s: %s", item.message_id, error)
            outcomes.unconfirmed.append(item.page_id)
            # The feeder waits before its next claim, doubling while failures go on.
            self._backoff = backoff_after_failure(self._backoff)
