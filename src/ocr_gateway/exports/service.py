"""`ExportService`: a job's result in each format, and its page images.

txt and json are streamed from PostgreSQL a batch of pages at a time, so the API process never
holds a whole job's text. pdf and zip are built in the render pool into
`files/<job_id>/result-<key>.<ext>` (a finished job) or `partial-<key>.<ext>` (a job still
running, with `partial=true`), where the key changes whenever the job does: a finished job's
file is built once and reused, a partial one never passes for the final one. Routes serve
them from disk. Deleting a job removes its folder, exports included.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import orjson

from ocr_gateway.core.errors import Conflict, NotFound, ServiceUnavailable
from ocr_gateway.core.process_pool import ProcessPool, WorkerLost
from ocr_gateway.core.settings import Settings
from ocr_gateway.db.engine import SessionFactory
from ocr_gateway.db.models import Job, JobStatus
from ocr_gateway.exports import builders
from ocr_gateway.exports import repository as repo
from ocr_gateway.exports.formats import (
    JSON_TAIL,
    ExportFormat,
    export_key,
    export_name,
    json_head,
    json_pages,
    page_entry,
    txt_pages,
)
from ocr_gateway.jobs import repository as jobs_repo
from ocr_gateway.rendering.storage import Storage

log = logging.getLogger(__name__)

# Pages read from the database at a time, for a stream or a manifest.
BATCH_PAGES = 200
# A build's time limit: a base plus a share per page (a page takes ~50 ms on one core).
BUILD_BASE_S = 60.0
BUILD_PER_PAGE_S = 1.0


class ExportService:
    def __init__(
        self, settings: Settings, sessions: SessionFactory, storage: Storage, pool: ProcessPool
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.storage = storage
        self.pool = pool
        # One build per export file in this process; every request for it waits on that build.
        self._building: dict[Path, asyncio.Task[Path]] = {}

    async def exportable_job(self, job_id: uuid.UUID, *, partial: bool, scope: str | None) -> Job:
        """The job, if its result can be exported now: 404 if it does not exist (or belongs to
        another tenant than `scope`), 409 (with its status) while it is not finished, unless
        `partial`."""
        async with self.sessions() as session:
            job = await jobs_repo.get_job(session, job_id, tenant=scope)
        if job is None:
            raise NotFound(f"job {job_id} does not exist")
        if not partial and not JobStatus(job.status).finished:
            raise Conflict(
                f"job {job_id} is {job.status}: its result is ready once it is completed, "
                "failed or cancelled (partial=true exports the pages done so far)"
            ).add_fields(status=job.status)
        return job

    async def page_image(self, job_id: uuid.UUID, page_number: int, *, scope: str | None) -> Path:
        """The page's PNG: 404 if the job does not exist in `scope`, or the page does not."""
        async with self.sessions() as session:
            if await jobs_repo.get_job(session, job_id, tenant=scope) is None:
                raise NotFound(f"job {job_id} does not exist")
            page = await jobs_repo.get_page(session, job_id, page_number)
        path = self.storage.page_path(job_id, page_number)
        if page is None or not await anyio.Path(path).is_file():
            raise NotFound(f"page {page_number} of job {job_id} does not exist")
        return path

    # ------------------------------------------------------------ streamed formats

    async def _batches(
        self, job_id: uuid.UUID, *, texts_only: bool
    ) -> AsyncIterator[Sequence[Any]]:
        """The job's pages in page order, BATCH_PAGES at a time, each batch in a short session
        of its own (no connection is held while the client reads)."""
        after = 0
        query = repo.page_texts if texts_only else repo.page_batch
        while True:
            async with self.sessions() as session:
                rows = await query(session, job_id, after=after, limit=BATCH_PAGES)
            if rows:
                yield rows
            if len(rows) < BATCH_PAGES:
                return
            after = rows[-1].page_number

    async def stream_txt(self, job_id: uuid.UUID) -> AsyncIterator[bytes]:
        first = True
        async for rows in self._batches(job_id, texts_only=True):
            yield txt_pages([row.text for row in rows], first=first).encode()
            first = False

    async def stream_json(self, job_id: uuid.UUID) -> AsyncIterator[bytes]:
        yield json_head(job_id)
        first = True
        async for rows in self._batches(job_id, texts_only=False):
            yield json_pages([page_entry(*row) for row in rows], first=first)
            first = False
        yield JSON_TAIL

    # ------------------------------------------------------------ built formats

    async def export_file(self, job: Job, fmt: ExportFormat) -> Path:
        """The job's pdf or zip on disk, built now unless an export of the job as it is now
        exists. Concurrent requests for the same export share one build."""
        final = JobStatus(job.status).finished
        key = export_key(
            job.status,
            job.updated_at.timestamp(),
            job.rendered_pages,
            job.completed_pages,
            job.failed_pages,
        )
        target = self.storage.job_dir(job.job_id) / export_name(fmt, key, final=final)
        if await anyio.Path(target).is_file():
            return target
        build = self._building.get(target)
        if build is None:
            build = asyncio.create_task(self._build(job, fmt, target), name=f"export {target}")
            self._building[target] = build
            build.add_done_callback(lambda done: self._built(target, done))
        # A client that goes away stops waiting; the build goes on for the next request.
        return await asyncio.shield(build)

    def _built(self, target: Path, build: asyncio.Task[Path]) -> None:
        self._building.pop(target, None)
        if not build.cancelled() and build.exception() is not None:
            log.warning("export failed target=%s error=%r", target, build.exception())

    async def _build(self, job: Job, fmt: ExportFormat, target: Path) -> Path:
        job_dir = anyio.Path(target.parent)
        await job_dir.mkdir(parents=True, exist_ok=True)
        manifest = target.parent / f".manifest-{uuid.uuid4().hex}.jsonl"
        started = asyncio.get_running_loop().time()
        timeout = BUILD_BASE_S + BUILD_PER_PAGE_S * job.total_page_number
        try:
            await self._write_manifest(job.job_id, manifest)
            if fmt is ExportFormat.PDF:
                pages = await self.pool.run(
                    builders.build_pdf,
                    str(manifest),
                    str(target.parent),
                    self.settings.render_dpi,
                    str(target),
                    timeout=timeout,
                )
            else:
                pages = await self.pool.run(
                    builders.build_zip,
                    str(manifest),
                    str(target.parent),
                    str(job.job_id),
                    str(target),
                    timeout=timeout,
                )
        except WorkerLost as exc:
            raise ServiceUnavailable(f"the {fmt.value} export could not be built: {exc}") from exc
        except FileNotFoundError as exc:
            raise NotFound(f"job {job.job_id} was deleted during its export") from exc
        finally:
            await self.storage.remove_file(manifest)
        await self._remove_older(job.job_id, fmt, keep=target)
        log.info(
            "export built job_id=%s format=%s pages=%d seconds=%.2f",
            job.job_id,
            fmt.value,
            pages,
            asyncio.get_running_loop().time() - started,
        )
        return target

    async def _write_manifest(self, job_id: uuid.UUID, manifest: Path) -> None:
        """The job's pages as json result entries, one a line, for the builder to read."""
        async with await anyio.open_file(manifest, "wb") as out:
            async for rows in self._batches(job_id, texts_only=False):
                await out.write(b"".join(orjson.dumps(page_entry(*row)) + b"\n" for row in rows))

    async def _remove_older(self, job_id: uuid.UUID, fmt: ExportFormat, *, keep: Path) -> None:
        """Exports of the same format built from an earlier state of the job. A client still
        downloading one keeps reading it: an open file outlives its name."""
        job_dir = anyio.Path(self.storage.job_dir(job_id))
        async for path in job_dir.glob(f"*.{fmt.value}"):
            if path.name != keep.name and path.name.startswith(("result-", "partial-")):
                await path.unlink(missing_ok=True)
