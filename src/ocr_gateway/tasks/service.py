"""Tasks: base64 images in, one job out, published at once; its status, result and progress
read back from the job, its pages and its events, on any API process.

A task is accepted as an upload is: the tenant's quotas are pre-checked, each image is held to
the uploads' limits and inspected by the same inspection (`UploadService.inspect_batch`), and
the job is recorded by `UploadService.record_jobs`, then rendered by the `Renderer`. One image
is the job's source file as it came; several are merged into one multi-page TIFF in the
inspect pool (`rendering/frames.py`), `task_frames` mapping its pages back to the images. In
the job's own transaction the task adds a start of its job, unless an operator's stop is in
force: then a synchronous task is refused (503), and an asynchronous one waits for a start as
every job does. A refusal leaves no file and no row behind.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import anyio
from sqlalchemy.ext.asyncio import AsyncSession

from ocr_gateway.core.errors import (
    BadUpload,
    NotFound,
    ServiceUnavailable,
    document_refusal,
)
from ocr_gateway.core.process_pool import TaskTimedOut, WorkerLost
from ocr_gateway.core.settings import Settings
from ocr_gateway.db.engine import SessionFactory
from ocr_gateway.dispatch import repository as dispatch_repo
from ocr_gateway.events.hub import EventHub
from ocr_gateway.jobs import repository as jobs_repo
from ocr_gateway.rendering.frames import Merged, merge_images
from ocr_gateway.rendering.inspection import Inspection
from ocr_gateway.rendering.storage import Storage
from ocr_gateway.tasks import TASK_PRIORITY
from ocr_gateway.tasks import repository as repo
from ocr_gateway.tasks.body import (
    DecodedImage,
    decode_off_loop,
    images_of,
    parse_request,
    read_body,
)
from ocr_gateway.tasks.schemas import (
    TaskPage,
    TaskProgress,
    TaskResultValue,
    TaskState,
    TaskStatus,
)
from ocr_gateway.tasks.status import (
    PageView,
    detail_pages,
    failure_reason,
    shape_result,
    task_state,
)
from ocr_gateway.tenants import quotas
from ocr_gateway.tenants.access import Caller
from ocr_gateway.uploads.media import MediaType
from ocr_gateway.uploads.service import JobOwner, UploadService
from ocr_gateway.uploads.spool import SpooledUpload

log = logging.getLogger(__name__)

# While dispatch is stopped, a synchronous task is refused; its client tries again after this.
STOPPED_RETRY_AFTER_S = 10
# A waiting call re-reads its task this often without an event: a job can end without one
# (its rendering finishing after its last result).
WAIT_CHECK_S = 5.0
# A watcher of a task not published yet re-reads it this often: publishing records no event.
WATCH_PENDING_POLL_S = 1.0
EXTENSIONS = {
    MediaType.PNG: "png",
    MediaType.JPEG: "jpg",
    MediaType.TIFF: "tiff",
    MediaType.BMP: "bmp",
    MediaType.WEBP: "webp",
}
DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class Submitted:
    task_id: uuid.UUID
    detail: bool


@dataclass(frozen=True, slots=True)
class TaskView:
    """A task as read now: its status word and counters, its result once SUCCESS, its error
    once FAILURE, and its pages (for `detail`)."""

    task_id: uuid.UUID
    state: TaskState
    done: int
    total: int
    result: TaskResultValue | None
    error: str | None
    pages: tuple[PageView, ...] = ()
    frames: tuple[int, ...] = ()

    def status(self) -> TaskStatus:
        return TaskStatus(
            task_id=self.task_id, status=self.state, result=self.result, error=self.error
        )

    def progress(self) -> TaskProgress:
        return TaskProgress(
            task_id=self.task_id,
            status=self.state,
            done=self.done,
            total=self.total,
            result=self.result,
            error=self.error,
        )

    def detail(self) -> list[TaskPage]:
        return detail_pages(self.pages, self.frames)


class TaskService:
    def __init__(
        self,
        settings: Settings,
        sessions: SessionFactory,
        storage: Storage,
        uploads: UploadService,
        events: EventHub,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.storage = storage
        self.uploads = uploads
        self.events = events

    # ------------------------------------------------------------ accepting

    async def submit(
        self,
        body: AsyncIterator[bytes],
        content_length: str | None,
        caller: Caller,
        *,
        sync: bool,
    ) -> Submitted:
        """Read, check and record a task for `caller`'s tenant, and render it in the
        background; its pages are published as they are rendered (see the module's doc)."""
        settings = self.settings
        await quotas.precheck_quotas(self.sessions, settings, caller.tenant)
        raw = await read_body(body, content_length, max_bytes=settings.max_json_body_bytes)
        request = parse_request(raw)
        del raw
        as_list, detail = not isinstance(request.image_data, str), request.detail
        texts = images_of(request, max_images=settings.max_images_per_request)
        del request
        images = await decode_off_loop(texts, max_bytes=settings.max_upload_bytes)
        del texts
        if sync:
            async with self.sessions() as session:
                if await dispatch_repo.is_stopped(session):
                    raise _stopped()
        job_id = uuid.uuid4()
        written: list[Path] = []
        try:
            source, inspection, frames = await self._store(job_id, images, written)
            del images

            async def make_task(session: AsyncSession) -> None:
                stopped = await repo.stopped_for_share(session)
                if stopped and sync:
                    raise _stopped()
                await repo.mark_task(
                    session, job_id, frames=frames, as_list=as_list, priority=TASK_PRIORITY
                )
                if not stopped:
                    await dispatch_repo.add_dispatch_request(session, job_id)
                    await dispatch_repo.notify_dispatchers(session, "start")

            await self.uploads.record_jobs(
                [(job_id, source, inspection)], JobOwner(caller.tenant), then=make_task
            )
        except BaseException:
            for path in written:
                await self.storage.remove_file(path)
            raise
        self.uploads.hand_on(job_id, source, inspection)
        log.info("task accepted job_id=%s images=%d sync=%s", job_id, len(frames), sync)
        return Submitted(job_id, detail)

    async def _store(
        self, job_id: uuid.UUID, images: list[DecodedImage], written: list[Path]
    ) -> tuple[SpooledUpload, Inspection, list[int]]:
        """Write and inspect the images; one is the job's source as it is, several are merged
        into one TIFF. Every file written is listed in `written` (the caller's to remove)."""
        source_path = self.storage.temp_path(job_id)
        single = len(images) == 1
        parts: list[SpooledUpload] = []
        for index, image in enumerate(images):
            path = source_path if single else source_path.with_suffix(f".{index}.part")
            written.append(path)
            await anyio.Path(path).write_bytes(image.data)
            name = f"image.{EXTENSIONS[image.media_type]}"
            parts.append(SpooledUpload(path, name, image.media_type, len(image.data)))
        images.clear()
        inspections = await self.uploads.inspect_batch(parts)
        if single:
            return parts[0], inspections[0], [inspections[0].page_count]
        written.append(source_path)
        merged = await self._merge([str(part.path) for part in parts], str(source_path))
        for part in parts:
            await self.storage.remove_file(part.path)
        size = (await anyio.Path(source_path).stat()).st_size
        source = SpooledUpload(source_path, f"images-{len(parts)}.tiff", MediaType.TIFF, size)
        return source, merged.inspection, merged.frames

    async def _merge(self, paths: Sequence[str], target: str) -> Merged:
        """Merge the images in the inspect pool, held to the limits of one upload."""
        try:
            merged = await self.uploads.inspect_pool.run(
                merge_images,
                list(paths),
                target,
                self.uploads.limits,
                self.uploads.renderer.options,
                timeout=self.settings.inspect_timeout_s,
            )
        except TaskTimedOut as exc:
            raise BadUpload(
                "the images could not be merged within the limit of"
                f" {self.settings.inspect_timeout_s:g} s (INSPECT_TIMEOUT_S)"
            ) from exc
        except WorkerLost as exc:
            raise ServiceUnavailable(
                f"the images cannot be merged right now ({exc}); try again shortly"
            ) from exc
        problem = merged.inspection.problem
        if problem is not None:
            raise document_refusal(problem, merged.inspection.detail)
        return merged

    # ------------------------------------------------------------ reading

    async def view(self, task_id: uuid.UUID, *, scope: str | None) -> TaskView:
        """The task as it is now; NotFound for a job that is no task, or out of `scope`."""
        async with self.sessions() as session:
            job = await repo.get_task(session, task_id, tenant=scope)
            if job is None:
                raise NotFound(f"task {task_id} does not exist")
            rows = await jobs_repo.get_job_pages(session, task_id)
        pages = tuple(
            PageView(row.page_number, row.status, row.text, row.boxes, row.error) for row in rows
        )
        frames = tuple(job.task_frames or ())
        state = task_state(job.status, [page.status for page in pages])
        return TaskView(
            task_id=task_id,
            state=state,
            done=job.completed_pages + job.failed_pages,
            total=job.total_page_number - len(job.excluded_pages or ()),
            result=(
                shape_result(pages, frames, as_list=bool(job.task_list))
                if state == TaskState.SUCCESS
                else None
            ),
            error=(
                failure_reason(job.status, job.error, pages) if state == TaskState.FAILURE else None
            ),
            pages=pages,
            frames=frames,
        )

    async def wait(self, task_id: uuid.UUID, *, scope: str | None, timeout: float) -> TaskView:
        """The task once finished, or as it is when `timeout` has passed. Woken by the task's
        events (any API process may have stored its result), never by polling the broker."""
        view = await self.view(task_id, scope=scope)
        if view.state.finished or timeout <= 0:
            return view
        try:
            async with asyncio.timeout(timeout):
                async for event in self.events.follow(task_id, 0, heartbeat_s=WAIT_CHECK_S):
                    if event is None or event.type.terminal:
                        view = await self.view(task_id, scope=scope)
                        if view.state.finished:
                            return view
                return await self.view(task_id, scope=scope)
        except TimeoutError:
            return await self.view(task_id, scope=scope)

    async def watch(
        self, task_id: uuid.UUID, *, scope: str | None
    ) -> tuple[TaskView, AsyncIterator[TaskView]]:
        """The task now (NotFound if there is none), and its changes after that until it is
        finished. The events' position is read before the task, so nothing is missed."""
        cursor = await self.events.last_id(task_id)
        first = await self.view(task_id, scope=scope)
        return first, self._changes(first, cursor, scope)

    async def _changes(
        self, first: TaskView, cursor: int, scope: str | None
    ) -> AsyncIterator[TaskView]:
        last = first
        if last.state.finished:
            return
        following = self.events.follow(first.task_id, cursor, heartbeat_s=WATCH_PENDING_POLL_S)
        async for event in following:
            if event is None and last.state != TaskState.PENDING:
                continue
            try:
                view = await self.view(first.task_id, scope=scope)
            except NotFound:
                yield replace(last, state=TaskState.FAILURE, result=None, error=DELETED)
                return
            if view.progress() != last.progress():
                yield view
                last = view
            if view.state.finished:
                return


def _stopped() -> ServiceUnavailable:
    return ServiceUnavailable(
        "publishing is stopped by the operator; a synchronous task cannot be answered now"
        " (POST /image is accepted and waits for the start)",
        retry_after_s=STOPPED_RETRY_AFTER_S,
    )
