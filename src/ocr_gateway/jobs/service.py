"""Reading, cancelling and deleting jobs and pages: rows in PostgreSQL and PNGs under files/.

Every method a client route calls takes `scope`: the tenant whose jobs the call may touch, or
None for the operator. Another tenant's job is NotFound, with the words of a job that does not
exist, so that a client cannot tell the two apart.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from ocr_gateway.convert import WORKBOOK_READY
from ocr_gateway.convert import repository as convert_repo
from ocr_gateway.convert.schemas import DownloadLink
from ocr_gateway.core.errors import MalformedRequest, NotFound
from ocr_gateway.core.settings import Settings
from ocr_gateway.db.engine import SessionFactory
from ocr_gateway.db.models import Job, JobStatus, Page, PageStatus
from ocr_gateway.dispatch.control import DispatchControl
from ocr_gateway.events import repository as events_repo
from ocr_gateway.events.types import EventType
from ocr_gateway.jobs import repository as repo
from ocr_gateway.rendering.service import Renderer
from ocr_gateway.rendering.storage import Storage
from ocr_gateway.storage import ArtefactStore
from ocr_gateway.storage.cleanup import delete_all_job_artefacts
from ocr_gateway.storage.keys import job_prefix, page_key, page_thumbnails_prefix

log = logging.getLogger(__name__)

# How often a cancel looks whether the job's publishes in flight have settled.
CANCEL_SETTLE_POLL_S = 0.05


@dataclass(frozen=True, slots=True)
class JobPage:
    items: Sequence[Job]
    next_cursor: str | None


def encode_cursor(job: Job) -> str:
    raw = f"{job.created_at.isoformat()}|{job.job_id}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, job_id = base64.urlsafe_b64decode(padded).decode().split("|", 1)
        return dt.datetime.fromisoformat(created), uuid.UUID(job_id)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedRequest("the cursor is not one this service issued") from exc


@dataclass(frozen=True, slots=True)
class CancelOutcome:
    job: Job
    cancelled_pages: int


class JobService:
    def __init__(
        self,
        settings: Settings,
        sessions: SessionFactory,
        storage: Storage,
        store: ArtefactStore,
        renderer: Renderer,
        control: DispatchControl,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.storage = storage
        self.store = store
        self.renderer = renderer
        self.control = control

    async def list_open(
        self, *, limit: int, cursor: str | None, offset: int, tenant: str | None = None
    ) -> JobPage:
        """Jobs not completed (of `tenant`, or of every tenant), newest first (the operator's
        list)."""
        after = decode_cursor(cursor) if cursor else None
        async with self.sessions() as session:
            jobs = await repo.list_open_jobs(
                session,
                limit=limit + 1,
                after=after,
                offset=0 if after else offset,
                tenant=tenant,
            )
        more = len(jobs) > limit
        items = jobs[:limit]
        return JobPage(items, encode_cursor(items[-1]) if more and items else None)

    async def list_all(
        self, *, limit: int, cursor: str | None, status: JobStatus | None, scope: str | None
    ) -> JobPage:
        """Every job in `scope`, newest first (the client API's list)."""
        after = decode_cursor(cursor) if cursor else None
        async with self.sessions() as session:
            jobs = await repo.list_jobs(
                session, limit=limit + 1, after=after, status=status, tenant=scope
            )
        more = len(jobs) > limit
        items = jobs[:limit]
        return JobPage(items, encode_cursor(items[-1]) if more and items else None)

    async def get_page(self, job_id: uuid.UUID, page_number: int, *, scope: str | None) -> Page:
        async with self.sessions() as session:
            if await repo.get_job(session, job_id, tenant=scope) is None:
                raise NotFound(f"job {job_id} does not exist")
            page = await repo.get_page(session, job_id, page_number)
        if page is None:
            raise NotFound(f"page {page_number} of job {job_id} does not exist")
        return page

    async def cancel(self, job_id: uuid.UUID, *, scope: str | None) -> CancelOutcome:
        """Cancel what is left of the job: its pages not done become cancelled (pending ones are
        never published, late results for queued ones are dropped), and when this returns no
        page of it is being published either (in-flight publishes have settled, and the pages
        they settled are cancelled too). A finished job is left as it is."""
        async with self.sessions.begin() as session:
            job = await repo.lock_job(session, job_id, tenant=scope)
            if job is None:
                raise NotFound(f"job {job_id} does not exist")
            if JobStatus(job.status).finished:
                cancelled = await repo.count_pages(session, job_id, PageStatus.CANCELLED)
                return CancelOutcome(job, cancelled)
            await repo.cancel_unfinished_pages(session, job_id)
            await repo.cancel_job(session, job_id)
            await events_repo.record_event(session, job_id, EventType.JOB_CANCELLED)
        await self.renderer.cancel_render(job_id)
        await self.storage.remove_file(self.storage.temp_path(job_id))
        await self._settle_publishes(job_id)
        log.info("job cancelled job_id=%s", job_id)
        async with self.sessions() as session:
            job = await repo.get_job(session, job_id)
            cancelled = await repo.count_pages(session, job_id, PageStatus.CANCELLED)
        if job is None:
            raise NotFound(f"job {job_id} does not exist")
        return CancelOutcome(job, cancelled)

    async def _settle_publishes(self, job_id: uuid.UUID) -> None:
        """Wait until no page of the job is mid-publish (bounded by the publish lease), cancelling
        the pages a stopped publish gives back to pending."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.dispatch_lease_s
        while True:
            async with self.sessions.begin() as session:
                # Counted on both sides of the cancel: a page given back before the first count
                # is cancelled here, one given back after it was counted and is seen next round,
                # and a claim the cancel had to wait for is seen by the second count. No claim
                # takes a page of a cancelled job (`dispatch.repository.claim_pages`).
                publishing = await repo.count_pages(session, job_id, PageStatus.PUBLISHING)
                await repo.cancel_unfinished_pages(session, job_id)
                publishing += await repo.count_pages(session, job_id, PageStatus.PUBLISHING)
            if publishing == 0:
                return
            if loop.time() > deadline:
                log.warning("cancel: %d pages still publishing job_id=%s", publishing, job_id)
                return
            await asyncio.sleep(CANCEL_SETTLE_POLL_S)

    async def get(self, job_id: uuid.UUID, *, scope: str | None) -> tuple[Job, Sequence[Page]]:
        async with self.sessions() as session:
            job = await repo.get_job(session, job_id, tenant=scope)
            if job is None:
                raise NotFound(f"job {job_id} does not exist")
            pages = await repo.get_job_pages(session, job_id)
        return job, pages

    async def downloads(self, job: Job) -> list[DownloadLink]:
        """The files made from the job, listed once it is done: a `/convert/batch` job's
        workbook (none for other jobs)."""
        if not job.extract_tables or JobStatus(job.status) not in WORKBOOK_READY:
            return []
        async with self.sessions() as session:
            rows = await convert_repo.list_downloads(session, job.job_id)
        return [DownloadLink.of(row.file_id) for row in rows]

    async def delete_page(self, job_id: uuid.UUID, page_number: int) -> None:
        async with self.sessions.begin() as session:
            if await repo.lock_job(session, job_id) is None:
                raise NotFound(f"job {job_id} does not exist")
            if not await repo.delete_page(session, job_id, page_number):
                raise NotFound(f"page {page_number} of job {job_id} does not exist")
            await repo.refresh_job_progress(session, job_id)
        await self.store.delete(page_key(job_id, page_number))
        await self.store.delete_prefix(page_thumbnails_prefix(job_id, page_number))
        log.info("page deleted job_id=%s page_number=%d", job_id, page_number)

    async def delete_job(self, job_id: uuid.UUID, *, scope: str | None) -> None:
        """Remove the job's rows and files; its readers get `job.deleted`."""
        async with self.sessions.begin() as session:
            if await repo.lock_job(session, job_id, tenant=scope) is None:
                raise NotFound(f"job {job_id} does not exist")
            await events_repo.forget_events(session, job_id)
            await events_repo.record_event(session, job_id, EventType.JOB_DELETED)
            await repo.delete_job(session, job_id)
        await self.renderer.cancel_render(job_id)
        await self.storage.remove_file(self.storage.temp_path(job_id))
        await self.store.delete_prefix(job_prefix(job_id))
        log.info("job deleted job_id=%s", job_id)

    async def delete_all(self) -> None:
        """Stop publishing, delete every job's rows and files, and purge the pages queue."""
        await self.control.stop_and_drain()
        for job_id in self.renderer.rendering_job_ids:
            await self.renderer.cancel_render(job_id)
        async with self.sessions.begin() as session:
            await events_repo.record_all_deleted(session)
            deleted = await repo.delete_all_jobs(session)
        for job_id in deleted:
            await self.storage.remove_file(self.storage.temp_path(job_id))
        await delete_all_job_artefacts(self.store)
        purged = await self.control.purge_pages()
        log.info("all jobs deleted jobs=%d purged_messages=%d", len(deleted), purged)
