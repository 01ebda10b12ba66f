"""Operator actions on publishing: start (all, a job, a page), stop, and purge of the queue.

Each call records its decision in PostgreSQL and returns at once; the dispatchers of every app
process do the work in the background. A stop stays in force (`dispatch_state.stopped`) until a
start of every page: with `DISPATCH_MODE=auto` the dispatchers publish rendered pages by
themselves while no stop is in force, and a start of one job or one page publishes just that
scope, as in manual mode, leaving the stop in force for the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from typing import Literal

from ocr_gateway.core.errors import Conflict, NotFound
from ocr_gateway.core.settings import Settings
from ocr_gateway.db.engine import SessionFactory
from ocr_gateway.db.models import PageStatus
from ocr_gateway.dispatch import repository as repo
from ocr_gateway.dispatch.dispatcher import Dispatcher
from ocr_gateway.dispatch.schemas import MAX_JOB_PRIORITY
from ocr_gateway.jobs import repository as jobs_repo
from ocr_gateway.messaging.amqp import Broker

log = logging.getLogger(__name__)

DRAIN_POLL_S = 0.2


@dataclass(frozen=True, slots=True)
class StartScheduled:
    scope: Literal["all", "job", "page"]
    job_id: uuid.UUID | None
    page_number: int | None
    pending_pages: int


class DispatchControl:
    def __init__(
        self,
        settings: Settings,
        sessions: SessionFactory,
        broker: Broker,
        dispatcher: Dispatcher | None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.broker = broker
        self.dispatcher = dispatcher
        self._background: set[asyncio.Task[None]] = set()

    async def start_all(self) -> StartScheduled:
        async with self.sessions.begin() as session:
            await repo.lift_stop(session)
            pending = await repo.count_startable_pages(session)
            await repo.add_dispatch_request(session)
            await repo.notify_dispatchers(session, "start")
        self._wake_local()
        log.info("start requested scope=all pending=%d", pending)
        return StartScheduled("all", None, None, pending)

    async def start_job(self, job_id: uuid.UUID) -> StartScheduled:
        async with self.sessions.begin() as session:
            job = await jobs_repo.get_job(session, job_id)
            if job is None:
                raise NotFound(f"job {job_id} does not exist")
            if job.error is not None:
                raise Conflict(f"job {job_id} failed: {job.error}")
            pending = await repo.count_startable_pages(session, job_id)
            rendering = job.render_lease_until is not None
            if pending == 0 and not rendering:
                raise Conflict(f"job {job_id} has no pending pages (status {job.status})")
            await repo.add_dispatch_request(session, job_id)
            await repo.notify_dispatchers(session, "start")
        self._wake_local()
        log.info("start requested scope=job job_id=%s pending=%d", job_id, pending)
        return StartScheduled("job", job_id, None, pending)

    async def start_page(self, job_id: uuid.UUID, page_number: int) -> StartScheduled:
        async with self.sessions.begin() as session:
            job = await jobs_repo.lock_job(session, job_id)
            page = await jobs_repo.get_page(session, job_id, page_number) if job else None
            if job is None or page is None:
                raise NotFound(f"page {page_number} of job {job_id} does not exist")
            if job.error is not None:
                raise Conflict(f"job {job_id} failed: {job.error}")
            if page.status == PageStatus.FAILED:
                await repo.reset_failed_page(session, page.id)
                await jobs_repo.refresh_job_progress(session, job_id)
            elif page.status != PageStatus.PENDING:
                raise Conflict(f"page {page_number} of job {job_id} is already {page.status}")
            await repo.add_dispatch_request(session, job_id, page_number)
            await repo.notify_dispatchers(session, "start")
        self._wake_local()
        log.info("start requested scope=page job_id=%s page_number=%d", job_id, page_number)
        return StartScheduled("page", job_id, page_number, 1)

    async def stop(self) -> int:
        """Forget every start in every process, and halt this process's publishers now; the stop
        stays in force until a start of every page."""
        async with self.sessions.begin() as session:
            await repo.record_stop(session)
            cleared = await repo.clear_dispatch_requests(session)
            await repo.notify_dispatchers(session, "stop")
        if self.dispatcher is not None:
            self.spawn(self.dispatcher.halt())
        log.info("stop requested, starts cleared=%d", cleared)
        return cleared

    async def state(self) -> repo.DispatchSettingsRow:
        async with self.sessions() as session:
            return await repo.read_dispatch_state(session)

    async def set_rate(self, pages_per_second: float | None) -> repo.DispatchSettingsRow:
        """Cap publishing over every dispatcher (None lifts the cap); NOTIFY wakes each one,
        so a feeder waiting for tokens under the old rate draws again at once."""
        async with self.sessions.begin() as session:
            await repo.set_rate(session, pages_per_second)
            await repo.notify_dispatchers(session, "rate")
            state = await repo.read_dispatch_state(session)
        self._wake_local()
        log.info("publishing rate set pages_per_second=%s", pages_per_second)
        return state

    async def set_job_priority(self, job_id: uuid.UUID, priority: int) -> int:
        """A job's new priority, for the job and its pending pages; a task's cannot change."""
        async with self.sessions.begin() as session:
            job = await jobs_repo.lock_job(session, job_id)
            if job is None:
                raise NotFound(f"job {job_id} does not exist")
            if job.priority > MAX_JOB_PRIORITY:
                raise Conflict(f"job {job_id} is a task: its pages always go first")
            changed = await jobs_repo.set_job_priority(session, job_id, priority)
            if changed:
                await repo.notify_dispatchers(session, "priority")
        self._wake_local()
        log.info("priority set job_id=%s priority=%d pending_pages=%d", job_id, priority, changed)
        return changed

    async def stop_and_drain(self) -> None:
        """Stop, then wait until no page anywhere is mid-publish (bounded by the lease)."""
        await self.stop()
        if self.dispatcher is not None:
            await self.dispatcher.halt()
        deadline = asyncio.get_running_loop().time() + self.settings.dispatch_lease_s
        while asyncio.get_running_loop().time() < deadline:
            async with self.sessions() as session:
                if await repo.count_publishing(session) == 0:
                    return
            await asyncio.sleep(DRAIN_POLL_S)

    async def purge_queue(self) -> None:
        """Stop publishing, purge the pages queue, and return queued pages to pending."""
        await self.stop_and_drain()
        purged = await self.purge_pages()
        async with self.sessions.begin() as session:
            requeued = await repo.requeue_queued_pages(session)
        log.info("pages queue purged messages=%d pages_back_to_pending=%d", purged, requeued)

    async def purge_pages(self) -> int:
        """Empty the pages queue (after a stop and drain); returns the messages removed."""
        return await self.broker.purge_pages()

    def _wake_local(self) -> None:
        """NOTIFY reaches every dispatcher; the one in this process (if any) is woken at once."""
        if self.dispatcher is not None:
            self.dispatcher.wake()

    def spawn(self, work: object) -> None:
        """Run admin work after the response; keep a reference so it is not collected."""
        assert asyncio.iscoroutine(work)
        task: asyncio.Task[None] = asyncio.create_task(self._logged(work))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @staticmethod
    async def _logged(work: object) -> None:
        try:
            await work  # type: ignore[misc]
        except Exception:
            log.exception("background admin action failed")

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        for task in list(self._background):
            with contextlib.suppress(BaseException):
                await task
