"""`ExportService`: a job's result in each format, and its page images.

txt and json are streamed from PostgreSQL a batch of pages at a time, so the API process never
holds a whole job's text. pdf and zip are built in the render pool, from local copies of the
page PNGs, into a scratch folder, then stored as the job's artefact `result-<key>.<ext>` (a
finished job) or `partial-<key>.<ext>` (a job still running, with `partial=true`), where the
key changes whenever the job does: a finished job's file is built once and reused, a partial
one never passes for the final one. Routes stream them from the store. Deleting a job removes
its prefix, exports included. Two API processes asked for the same new export at once may
both build it; the store's atomic replace keeps one whole copy.
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
from ocr_gateway.storage import ArtefactStore, StoredFile
from ocr_gateway.storage.keys import job_artefact_key, job_of, job_prefix, page_key

log = logging.getLogger(__name__)

# Pages read from the database at a time, for a stream or a manifest.
BATCH_PAGES = 200
# A build's time limit: a base plus a share per page (a page takes ~50 ms on one core).
BUILD_BASE_S = 60.0
BUILD_PER_PAGE_S = 1.0


class ExportService:
    def __init__(
        self,
        settings: Settings,
        sessions: SessionFactory,
        storage: Storage,
        store: ArtefactStore,
        pool: ProcessPool,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.storage = storage
        self.store = store
        self.pool = pool
        # One build per export in this process, by key; every request for it waits on it.
        self._building: dict[str, asyncio.Task[StoredFile]] = {}

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

    async def page_image(
        self, job_id: uuid.UUID, page_number: int, *, scope: str | None
    ) -> StoredFile:
        """The page's PNG: 404 if the job does not exist in `scope`, or the page does not."""
        async with self.sessions() as session:
            if await jobs_repo.get_job(session, job_id, tenant=scope) is None:
                raise NotFound(f"job {job_id} does not exist")
            page = await jobs_repo.get_page(session, job_id, page_number)
        key = page_key(job_id, page_number)
        size = None if page is None else await self.store.size(key)
        if size is None:
            raise NotFound(f"page {page_number} of job {job_id} does not exist")
        return StoredFile(key, size, "image/png")

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

    async def export_file(self, job: Job, fmt: ExportFormat) -> StoredFile:
        """The job's pdf or zip in the store, built now unless an export of the job as it is
        now exists. Concurrent requests for the same export share one build."""
        final = JobStatus(job.status).finished
        state = export_key(
            job.status,
            job.updated_at.timestamp(),
            job.rendered_pages,
            job.completed_pages,
            job.failed_pages,
        )
        key = job_artefact_key(job.job_id, export_name(fmt, state, final=final))
        size = await self.store.size(key)
        if size is not None:
            return StoredFile(key, size, fmt.media_type)
        build = self._building.get(key)
        if build is None:
            build = asyncio.create_task(self._build(job, fmt, key), name=f"export {key}")
            self._building[key] = build
            build.add_done_callback(lambda done: self._built(key, done))
        # A client that goes away stops waiting; the build goes on for the next request.
        return await asyncio.shield(build)

    def _built(self, key: str, build: asyncio.Task[StoredFile]) -> None:
        self._building.pop(key, None)
        if not build.cancelled() and build.exception() is not None:
            log.warning("export failed key=%s error=%r", key, build.exception())

    async def _build(self, job: Job, fmt: ExportFormat, key: str) -> StoredFile:
        started = asyncio.get_running_loop().time()
        timeout = BUILD_BASE_S + BUILD_PER_PAGE_S * job.total_page_number
        async with self.storage.scratch() as folder:
            manifest = folder / "manifest.jsonl"
            target = folder / key.rsplit("/", 1)[-1]
            await self._write_manifest(job.job_id, manifest)
            page_keys = await self._page_keys(job.job_id)
            async with self.store.local_copies(page_keys.values()) as copies:
                pngs = {n: str(copies[k]) for n, k in page_keys.items() if k in copies}
                try:
                    if fmt is ExportFormat.PDF:
                        pages = await self.pool.run(
                            builders.build_pdf,
                            str(manifest),
                            pngs,
                            self.settings.render_dpi,
                            str(target),
                            timeout=timeout,
                        )
                    else:
                        pages = await self.pool.run(
                            builders.build_zip,
                            str(manifest),
                            pngs,
                            str(job.job_id),
                            str(target),
                            timeout=timeout,
                        )
                except WorkerLost as exc:
                    raise ServiceUnavailable(
                        f"the {fmt.value} export could not be built: {exc}"
                    ) from exc
            size = (await anyio.Path(target).stat()).st_size
            async with self.sessions() as session:
                if await jobs_repo.get_job(session, job.job_id) is None:
                    raise NotFound(f"job {job.job_id} was deleted during its export")
            await self.store.put_file(key, target, content_type=fmt.media_type, move=True)
        await self._remove_older(job.job_id, fmt, keep=key)
        log.info(
            "export built job_id=%s format=%s pages=%d seconds=%.2f",
            job.job_id,
            fmt.value,
            pages,
            asyncio.get_running_loop().time() - started,
        )
        return StoredFile(key, size, fmt.media_type)

    async def _page_keys(self, job_id: uuid.UUID) -> dict[int, str]:
        """The job's stored page PNGs, by page number."""
        keys = {}
        for key in await self.store.list_keys(job_prefix(job_id)):
            name = key.rsplit("/", 1)[-1]
            stem, _, suffix = name.partition(".")
            if suffix == "png" and stem.isdigit() and job_of(key) == job_id:
                keys[int(stem)] = key
        return keys

    async def _write_manifest(self, job_id: uuid.UUID, manifest: Path) -> None:
        """The job's pages as json result entries, one a line, for the builder to read."""
        async with await anyio.open_file(manifest, "wb") as out:
            async for rows in self._batches(job_id, texts_only=False):
                await out.write(b"".join(orjson.dumps(page_entry(*row)) + b"\n" for row in rows))

    async def _remove_older(self, job_id: uuid.UUID, fmt: ExportFormat, *, keep: str) -> None:
        """Exports of the same format built from an earlier state of the job. A client still
        downloading one keeps reading it on disk (an open file outlives its name); on S3 a
        download cut by the delete fails and is asked for again."""
        for key in await self.store.list_keys(job_prefix(job_id)):
            name = key.rsplit("/", 1)[-1]
            if (
                key != keep
                and name.endswith(f".{fmt.value}")
                and name.startswith(("result-", "partial-"))
            ):
                await self.store.delete(key)
