"""Reading and deleting jobs and pages: rows in PostgreSQL and PNGs under files/."""

from __future__ import annotations

import base64
import datetime as dt
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from ocr_gateway.core.errors import MalformedRequest, NotFound
from ocr_gateway.db.engine import SessionFactory
from ocr_gateway.db.models import Job, Page
from ocr_gateway.dispatch.control import DispatchControl
from ocr_gateway.jobs import repository as repo
from ocr_gateway.rendering.service import Renderer
from ocr_gateway.rendering.storage import Storage

log = logging.getLogger(__name__)


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


class JobService:
    def __init__(
        self,
        sessions: SessionFactory,
        storage: Storage,
        renderer: Renderer,
        control: DispatchControl,
    ) -> None:
        self.sessions = sessions
        self.storage = storage
        self.renderer = renderer
        self.control = control

    async def list_open(self, *, limit: int, cursor: str | None, offset: int) -> JobPage:
        after = decode_cursor(cursor) if cursor else None
        async with self.sessions() as session:
            jobs = await repo.list_open_jobs(
                session, limit=limit + 1, after=after, offset=0 if after else offset
            )
        more = len(jobs) > limit
        items = jobs[:limit]
        return JobPage(items, encode_cursor(items[-1]) if more and items else None)

    async def get(self, job_id: uuid.UUID) -> tuple[Job, Sequence[Page]]:
        async with self.sessions() as session:
            job = await repo.get_job(session, job_id)
            if job is None:
                raise NotFound(f"job {job_id} does not exist")
            pages = await repo.get_job_pages(session, job_id)
        return job, pages

    async def delete_page(self, job_id: uuid.UUID, page_number: int) -> None:
        async with self.sessions.begin() as session:
            if await repo.lock_job(session, job_id) is None:
                raise NotFound(f"job {job_id} does not exist")
            path = await repo.delete_page(session, job_id, page_number)
            if path is None:
                raise NotFound(f"page {page_number} of job {job_id} does not exist")
            await repo.refresh_job_progress(session, job_id)
        await self.storage.remove_file(path)
        log.info("page deleted job_id=%s page_number=%d", job_id, page_number)

    async def delete_job(self, job_id: uuid.UUID) -> None:
        async with self.sessions.begin() as session:
            if not await repo.delete_job(session, job_id):
                raise NotFound(f"job {job_id} does not exist")
        await self.renderer.cancel_render(job_id)
        await self.storage.remove_job_dir(job_id)
        await self.storage.remove_file(self.storage.temp_path(job_id))
        log.info("job deleted job_id=%s", job_id)

    async def delete_all(self) -> None:
        """Stop publishing, delete every job's rows and files, and purge the pages queue."""
        await self.control.stop_and_drain()
        for job_id in self.renderer.rendering_job_ids:
            await self.renderer.cancel_render(job_id)
        async with self.sessions.begin() as session:
            deleted = await repo.delete_all_jobs(session)
        await self.storage.remove_all_job_dirs()
        for job_id in deleted:
            await self.storage.remove_file(self.storage.temp_path(job_id))
        purged = await self.control.purge_pages()
        log.info("all jobs deleted jobs=%d purged_messages=%d", len(deleted), purged)
