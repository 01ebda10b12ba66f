"""Rendering uploads' pages in the background, in the render pool, resumable after a crash.

A job with `text_layer=auto` has each PDF page's text layer read and judged in the same pool
call (rendering/text_layer.py); a page that passes is recorded `done` in the transaction that
records its PNG, with its `page.done` event and, when it was the job's last, `job.completed`,
exactly as if a worker's result had arrived.

The pool writes a chunk's PNGs into the job's scratch folder under TEMP_DIR; each is then
moved into the artefact store (`put_file(move=True)`: a rename into FILES_DIR on local disk,
an upload on S3) before its page row is inserted, so a page row always has its PNG. When the
store cannot take a page (`StorageUnavailable`), the render stops without failing the job:
its lease is handed back with the attempt not counted, the upload stays in TEMP_DIR, and the
next `resume_unfinished` renders the pages that have no row yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import anyio
from sqlalchemy.ext.asyncio import AsyncSession

from ocr_gateway.core.process_pool import ProcessPool, WorkerLost
from ocr_gateway.core.settings import Settings
from ocr_gateway.db.engine import SessionFactory
from ocr_gateway.dispatch.repository import notify_dispatchers
from ocr_gateway.events import repository as events_repo
from ocr_gateway.events.types import EventType
from ocr_gateway.jobs import repository as jobs_repo
from ocr_gateway.metrics import registry as metrics
from ocr_gateway.rendering import repository as repo
from ocr_gateway.rendering.fair_share import FairShare
from ocr_gateway.rendering.mupdf import RenderOptions
from ocr_gateway.rendering.pages import RenderFailure, render_pages
from ocr_gateway.rendering.storage import Storage
from ocr_gateway.rendering.text_layer import RenderedChunk, render_pages_reading_text
from ocr_gateway.storage import ArtefactStore, StorageUnavailable
from ocr_gateway.storage.keys import job_prefix, page_key

log = logging.getLogger(__name__)

# Pages of one chunk handed to the store at once (uploads in flight, on S3).
STORE_CONCURRENCY = 8
PNG = "image/png"

# Pixels rendered per chunk at most: eight A4 pages at 200 DPI. A chunk of huge image frames
# has fewer pages, so that no chunk holds a render process for long while other jobs wait.
CHUNK_PIXELS = 32_000_000


def chunk_pages(max_pages: int, page_pixels: int) -> int:
    """Pages per render chunk: up to `max_pages`, fewer for large pages, at least one."""
    if page_pixels <= 0:
        return max_pages
    return max(1, min(max_pages, CHUNK_PIXELS // page_pixels))


class Renderer:
    """Owns the render tasks of this process and their leases."""

    def __init__(
        self,
        settings: Settings,
        sessions: SessionFactory,
        storage: Storage,
        store: ArtefactStore,
        render_pool: ProcessPool,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.storage = storage
        self.store = store
        self.render_pool = render_pool
        self.options = RenderOptions(
            dpi=settings.render_dpi,
            grayscale=settings.render_grayscale,
            max_page_pixels=settings.max_page_pixels,
        )
        self._renders: dict[uuid.UUID, asyncio.Task[None]] = {}
        # Two chunks per process in flight: while one chunk's rows are written to the
        # database, the process is already rendering the next one instead of waiting.
        self._share = FairShare(2 * render_pool.workers)

    # ------------------------------------------------------------ upload

    def schedule(
        self,
        job_id: uuid.UUID,
        media_type: str,
        pages: Iterable[int],
        *,
        attempt: int,
        page_pixels: int = 0,
        text_layer: bool = False,
        tables: bool = False,
    ) -> None:
        """Render `pages` in the background; `page_pixels` (the largest page's, if known)
        sizes the chunks. With `text_layer`, pages whose text layer passes are done at once,
        with their tables read from it too when the job asks for `tables`."""
        size = chunk_pages(self.settings.render_chunk_pages, page_pixels)
        task = asyncio.create_task(
            self._render_job(job_id, media_type, list(pages), attempt, size, text_layer, tables),
            name=f"render-{job_id}",
        )
        self._renders[job_id] = task
        task.add_done_callback(lambda done: self._forget_render(job_id, done))

    def _forget_render(self, job_id: uuid.UUID, done: asyncio.Task[None]) -> None:
        """Drop a finished render task, unless a resume has put a newer one in its place."""
        if self._renders.get(job_id) is done:
            del self._renders[job_id]

    @property
    def rendering_job_ids(self) -> list[uuid.UUID]:
        return list(self._renders)

    async def _render_job(
        self,
        job_id: uuid.UUID,
        media_type: str,
        pages: list[int],
        attempt: int,
        size: int,
        text_layer: bool = False,
        tables: bool = False,
    ) -> None:
        out_dir = self.storage.render_dir(job_id)
        try:
            await anyio.Path(out_dir).mkdir(parents=True, exist_ok=True)
            await self._render_pages(
                job_id, media_type, pages, attempt, size, str(out_dir), text_layer, tables
            )
        finally:
            await self.storage.remove_dir(out_dir)

    async def _render_pages(
        self,
        job_id: uuid.UUID,
        media_type: str,
        pages: list[int],
        attempt: int,
        size: int,
        out_dir: str,
        text_layer: bool,
        tables: bool,
    ) -> None:
        source = str(self.storage.temp_path(job_id))
        chunks = [pages[i : i + size] for i in range(0, len(pages), size)]
        failure: str | None = None
        storage_down: str | None = None
        job_gone = False
        log.info("render started job_id=%s pages=%d attempt=%d", job_id, len(pages), attempt)

        def stopped() -> bool:
            return failure is not None or storage_down is not None or job_gone

        async def worker() -> None:
            nonlocal failure, storage_down, job_gone
            while chunks and not stopped():
                async with self._share.slot(job_id):
                    if not chunks or stopped():
                        return
                    chunk = chunks.pop(0)
                    try:
                        rendered = await self._render_chunk(
                            source, media_type, chunk, out_dir, text_layer, tables
                        )
                    except RenderFailure as exc:
                        failure = str(exc)
                        return
                sizes = await asyncio.to_thread(_file_sizes, rendered.written)
                try:
                    stored = await self._store_pages(job_id, rendered.written)
                except StorageUnavailable as exc:
                    storage_down = str(exc)
                    return
                except RenderFailure as exc:
                    failure = str(exc)
                    return
                async with self.sessions.begin() as session:
                    recorded = await repo.record_rendered_pages(
                        session,
                        job_id,
                        stored,
                        render_lease_s=self.settings.render_lease_s,
                        sizes=sizes,
                        read_pages=rendered.text_pages,
                    )
                    if recorded is not None and recorded.done_pages:
                        await _record_read_pages(session, job_id, recorded)
                    # New pending pages: a dispatcher with a start in force for them (automatic
                    # dispatch, a task's own start, an operator's) claims them now, not at its
                    # next poll. A dispatcher without one only looks and sleeps again.
                    await notify_dispatchers(session, "rendered")
                if recorded is None:
                    job_gone = True
                elif rendered.text_pages or rendered.refused:
                    log.info(
                        "text layer job_id=%s read=%s ocr=%s",
                        job_id,
                        sorted(rendered.text_pages),
                        {n: reason for n, reason in sorted(rendered.refused.items())},
                    )

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self._share.slots, len(chunks)) or 1):
                    group.create_task(worker())
        except* Exception as errors:
            failure = "; ".join(f"{type(e).__name__}: {e}" for e in errors.exceptions)
            log.exception("render crashed job_id=%s", job_id)

        if job_gone:
            log.info("render abandoned, job deleted job_id=%s", job_id)
            await self.storage.remove_file(source)
            await self.store.delete_prefix(job_prefix(job_id))
            return
        if storage_down is not None and failure is None:
            # Not the job's fault: hand the render back (the attempt not counted) and keep the
            # upload; `resume_unfinished` renders the pages not stored once the store is back.
            async with self.sessions.begin() as session:
                await repo.release_render_leases(session, [job_id])
            log.warning("render paused, storage unavailable job_id=%s: %s", job_id, storage_down)
            return
        async with self.sessions.begin() as session:
            if failure is not None:
                reason = f"rendering failed: {failure}"
                if await jobs_repo.fail_job(session, job_id, reason):
                    await events_repo.record_event(session, job_id, EventType.JOB_FAILED)
            else:
                await repo.finish_render(session, job_id)
            job = await jobs_repo.lock_job(session, job_id)
            if job is not None:
                before = job.status
                after = await jobs_repo.refresh_job_progress(session, job_id)
                # A job whose every page was read from its text layer completes here, once
                # its render lease is released; a failed job has had its event already.
                if failure is None:
                    await events_repo.record_status_change(session, job_id, before, after)
        await self.storage.remove_file(source)
        if failure is not None:
            log.error("render failed job_id=%s reason=%s", job_id, failure)
        else:
            log.info("render finished job_id=%s pages=%d", job_id, len(pages))

    async def _store_pages(
        self, job_id: uuid.UUID, written: list[tuple[int, str]]
    ) -> list[tuple[int, str]]:
        """Move a chunk's PNGs from the scratch folder into the store; (page, key) pairs."""
        limit = asyncio.Semaphore(STORE_CONCURRENCY)

        async def place(number: int, path: str) -> tuple[int, str]:
            key = page_key(job_id, number)
            async with limit:
                try:
                    await self.store.put_file(key, Path(path), content_type=PNG, move=True)
                except OSError as exc:
                    # A full local disk fails the render, as a full disk in the pool does.
                    if exc.errno == errno.ENOSPC:
                        reason = f"no space left on the device storing page {number}"
                        raise RenderFailure(reason) from exc
                    raise
            return number, key

        return list(await asyncio.gather(*(place(number, path) for number, path in written)))

    async def _render_chunk(
        self,
        source: str,
        media_type: str,
        pages: list[int],
        out_dir: str,
        text_layer: bool,
        tables: bool = False,
    ) -> RenderedChunk:
        """Render a chunk (reading its text layers too, with `text_layer`); after a worker
        loss, retry its pages one by one to find the culprit."""
        timeout = self.settings.render_page_timeout_s * len(pages)
        try:
            return await self._run_render(
                source, media_type, pages, out_dir, text_layer, timeout, tables
            )
        except WorkerLost as exc:
            log.warning("render worker lost pages=%s reason=%s", pages, exc)
            last_error = exc
        whole = RenderedChunk([])
        for number in pages:
            for attempt in range(1, self.settings.render_max_attempts + 1):
                try:
                    one = await self._run_render(
                        source,
                        media_type,
                        [number],
                        out_dir,
                        text_layer,
                        self.settings.render_page_timeout_s,
                        tables,
                    )
                    whole.written += one.written
                    whole.text_pages.update(one.text_pages)
                    whole.refused.update(one.refused)
                    break
                except WorkerLost as exc:
                    last_error = exc
                    log.warning("render retry page_number=%d attempt=%d: %s", number, attempt, exc)
            else:
                raise RenderFailure(f"page {number}: {last_error}")
        return whole

    async def _run_render(
        self,
        source: str,
        media_type: str,
        pages: list[int],
        out_dir: str,
        text_layer: bool,
        timeout: float,
        tables: bool = False,
    ) -> RenderedChunk:
        started = time.perf_counter()
        chunk = await self._run_in_pool(
            source, media_type, pages, out_dir, text_layer, timeout, tables
        )
        per_page = (time.perf_counter() - started) / len(pages)
        for _ in pages:
            metrics.RENDER_SECONDS.observe(per_page)
        return chunk

    async def _run_in_pool(
        self,
        source: str,
        media_type: str,
        pages: list[int],
        out_dir: str,
        text_layer: bool,
        timeout: float,
        tables: bool,
    ) -> RenderedChunk:
        if text_layer:
            return await self.render_pool.run(
                render_pages_reading_text,
                source,
                media_type,
                pages,
                out_dir,
                self.options,
                tables,
                timeout=timeout,
            )
        written = await self.render_pool.run(
            render_pages, source, media_type, pages, out_dir, self.options, timeout=timeout
        )
        return RenderedChunk(written)

    # ------------------------------------------------------------ recovery

    async def resume_unfinished(self) -> int:
        """Resume renders whose owner died: from temp/ if the upload is there, else fail them."""
        async with self.sessions.begin() as session:
            claims = await repo.claim_unfinished_renders(
                session, render_lease_s=self.settings.render_lease_s
            )
        for claim in claims:
            source = self.storage.temp_path(claim.job_id)
            missing = [
                n for n in range(1, claim.total_page_number + 1) if n not in claim.done_pages
            ]
            if claim.render_attempts > self.settings.render_max_attempts + 1:
                reason = f"rendering did not finish after {claim.render_attempts - 1} attempts"
            elif not await _exists(source):
                reason = "the upload was lost before rendering finished"
            else:
                log.info("render resumed job_id=%s missing=%d", claim.job_id, len(missing))
                self.schedule(
                    claim.job_id,
                    claim.media_type,
                    missing,
                    attempt=claim.render_attempts,
                    text_layer=claim.text_layer,
                    tables=claim.tables,
                )
                continue
            async with self.sessions.begin() as session:
                if await jobs_repo.fail_job(session, claim.job_id, reason):
                    await events_repo.record_event(session, claim.job_id, EventType.JOB_FAILED)
            await self.storage.remove_file(source)
            log.error("render abandoned job_id=%s reason=%s", claim.job_id, reason)
        return len(claims)

    async def renew_render_leases(self) -> None:
        mine = self.rendering_job_ids
        if mine:
            async with self.sessions.begin() as session:
                await repo.renew_render_leases(
                    session, mine, render_lease_s=self.settings.render_lease_s
                )

    async def cancel_render(self, job_id: uuid.UUID) -> None:
        task = self._renders.get(job_id)
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    async def close(self) -> None:
        """Stop rendering and hand this process's renders back, so a restart resumes them."""
        mine = self.rendering_job_ids
        for task in list(self._renders.values()):
            task.cancel()
        for task in list(self._renders.values()):
            with contextlib.suppress(BaseException):
                await task
        if mine:
            with contextlib.suppress(Exception):
                async with self.sessions.begin() as session:
                    await repo.release_render_leases(session, mine)


async def _record_read_pages(
    session: AsyncSession, job_id: uuid.UUID, recorded: repo.RecordedPages
) -> None:
    """Pages read at render time, as a worker's results would be: the job's counters and
    status refreshed (under the row lock `record_rendered_pages` took), a `page.done` each,
    and the job's own event if it has just finished."""
    after = await jobs_repo.refresh_job_progress(session, job_id)
    for number in recorded.done_pages:
        await events_repo.record_event(session, job_id, EventType.PAGE_DONE, page_number=number)
    await events_repo.record_status_change(session, job_id, recorded.status_before, after)


def _file_sizes(written: Iterable[tuple[int, str]]) -> dict[int, int]:
    """Each written PNG's bytes, by page number, for the tenant's storage quota: a stat each
    of the scratch files before they go to the store, so both backends count the same bytes."""
    sizes: dict[int, int] = {}
    for number, path in written:
        with contextlib.suppress(FileNotFoundError):
            sizes[number] = os.stat(path).st_size
    return sizes


async def _exists(path: object) -> bool:
    return await anyio.Path(str(path)).exists()
