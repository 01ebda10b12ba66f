"""`DetectService`: the detect-first jobs of `/v1/ocr/jobs`, and what a result does to them.

- `create`: a row PENDING_UPLOAD, no file, nothing for the renderer.
- `upload`: the file goes the uploads' way (spooled, inspected by `UploadService`, recorded
  by `UploadService.record_jobs` as an ordinary job without dedup or text layer, rendered by
  the `Renderer`); in the job's own transaction the row becomes UPLOADED, the job's pages are
  marked `detect`, and a start of the job is added unless an operator's stop is in force, as
  a one-call task does (tasks/service.py): its pages are published as they are rendered.
- `after_result` (called by the results consumer in each result's transaction, under the
  job's row lock): once every page is detected, the detect result is written to the store
  and the job is DETECT_DONE; once every page is recognised, DONE; a failed job is FAILED.
- `replace_boxes` (PATCH) and `run_ocr`: the detect result replaced atomically (a new object
  written, then the row pointed at it), or recognised box by box.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator, Sequence

import anyio
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ocr_gateway.core.errors import NotFound, WrongState
from ocr_gateway.core.settings import Settings
from ocr_gateway.db.engine import SessionFactory
from ocr_gateway.db.models import DetectJob, DetectStatus, JobStatus, Page, PageStatus, TextLayer
from ocr_gateway.detect import repository as repo
from ocr_gateway.detect.schemas import (
    DetectBox,
    DetectJobCreated,
    DetectJobOut,
    DetectPage,
    DetectResult,
    OcrResult,
    RecognizedBox,
    RecognizedPage,
)
from ocr_gateway.detect.validation import parse_patch, validate_patch
from ocr_gateway.dispatch import repository as dispatch_repo
from ocr_gateway.events import repository as events_repo
from ocr_gateway.exports.formats import png_size
from ocr_gateway.jobs import repository as jobs_repo
from ocr_gateway.rendering.storage import Storage
from ocr_gateway.storage import ArtefactStore
from ocr_gateway.storage.keys import job_artefact_key, page_key
from ocr_gateway.tasks import repository as tasks_repo
from ocr_gateway.tasks.body import read_body
from ocr_gateway.tenants import quotas
from ocr_gateway.tenants import repository as tenants_repo
from ocr_gateway.tenants.access import Caller
from ocr_gateway.uploads.options import UploadOptions
from ocr_gateway.uploads.service import BATCH_TYPES, JobOwner, UploadService
from ocr_gateway.uploads.spool import spool_upload

log = logging.getLogger(__name__)

# When each call may be made (any other status answers 409 naming the current one).
EDITABLE = frozenset({DetectStatus.DETECT_DONE, DetectStatus.DONE})
# Page PNGs read at once for their sizes when a job's detection ends.
SIZE_READS_AT_ONCE = 8
RUNNABLE = EDITABLE
# Job statuses that end a detect-first job as FAILED, whatever it was doing.
ENDED_JOB = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})


def result_key(job_id: uuid.UUID, version: int) -> str:
    """Each version of a detect result is an object of its own: a replacement never
    overwrites what a reader may be reading."""
    return job_artefact_key(job_id, f"detect-{version}.json")


def encode_result(result: DetectResult) -> bytes:
    return result.model_dump_json().encode()


def detected_boxes(page: Page) -> list[DetectBox]:
    """The boxes a `detect` result stored on a page (each with its id and corners)."""
    return [
        DetectBox(id=str(box["id"]), points=box["points"], score=box.get("score"))
        for box in page.boxes or []
        if box.get("id") is not None and box.get("points") is not None
    ]


def recognized_page(page: Page) -> RecognizedPage:
    boxes = [
        RecognizedBox(
            id=str(box["id"]),
            points=box["points"],
            text=str(box.get("text") or ""),
            confidence=box.get("confidence"),
        )
        for box in page.boxes or []
        if box.get("id") is not None and box.get("points") is not None
    ]
    return RecognizedPage(
        page_index=page.page_number - 1,
        status=page.status,
        text=page.text or "",
        boxes=boxes,
        error=page.error,
    )


class DetectService:
    def __init__(
        self,
        settings: Settings,
        sessions: SessionFactory,
        storage: Storage,
        store: ArtefactStore,
        uploads: UploadService,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.storage = storage
        self.store = store
        self.uploads = uploads

    # ------------------------------------------------------------ the job

    async def create(self, caller: Caller) -> DetectJobCreated:
        job_id = uuid.uuid4()
        async with self.sessions.begin() as session:
            await tenants_repo.ensure_tenant(session, caller.tenant)
            await repo.create(session, job_id, caller.tenant)
        log.info("detect job created job_id=%s tenant=%s", job_id, caller.tenant)
        return DetectJobCreated(job_id=job_id, status=DetectStatus.PENDING_UPLOAD)

    async def upload(
        self,
        job_id: uuid.UUID,
        caller: Caller,
        body: AsyncIterator[bytes],
        content_type: str | None,
        content_length: str | None,
    ) -> DetectJobCreated:
        """Take the job's one file and start its detection (see the module's doc)."""
        row = await self._require(
            job_id, caller, frozenset({DetectStatus.PENDING_UPLOAD}), "upload the file of"
        )
        await quotas.precheck_quotas(self.sessions, self.settings, row.tenant)
        # Spooled under a name of its own: two uploads to one job at once never share a file.
        # The winner (the one whose row is still PENDING_UPLOAD under its lock) moves it to
        # the job's temp path, where the renderer reads it, in the job's own transaction.
        source = self.storage.temp_path(job_id)
        part = source.with_name(f"{job_id}.{uuid.uuid4().hex}.part")
        upload = await spool_upload(
            body,
            content_type,
            content_length,
            part,
            max_bytes=self.settings.max_upload_bytes,
            accepted=BATCH_TYPES,
        )
        # Boxes come from the detector: no page is read from its text layer, no dedup.
        options = UploadOptions(text_layer=TextLayer.OFF, dedup=False)
        moved = False
        try:
            (inspection,) = await self.uploads.inspect_batch([upload])

            async def mark_uploaded(session: AsyncSession) -> None:
                nonlocal moved
                locked = await repo.get(session, job_id, tenant=caller.scope, lock=True)
                if locked is None:
                    raise NotFound(f"job {job_id} does not exist")
                if locked.status != DetectStatus.PENDING_UPLOAD:
                    raise _wrong(locked.status, "upload the file of")
                await repo.mark_uploaded(session, job_id)
                if not await tasks_repo.stopped_for_share(session):
                    await dispatch_repo.add_dispatch_request(session, job_id)
                    await dispatch_repo.notify_dispatchers(session, "start")
                await anyio.Path(part).rename(source)
                moved = True

            try:
                await self.uploads.record_jobs(
                    [(job_id, upload, inspection)],
                    JobOwner(row.tenant),
                    options=options,
                    then=mark_uploaded,
                )
            except IntegrityError as exc:
                # Another upload of this job recorded it first (its `jobs` row exists).
                raise _wrong(DetectStatus.UPLOADED, "upload the file of") from exc
        except BaseException:
            await self.storage.remove_file(source if moved else part)
            raise
        upload = dataclasses.replace(upload, path=source)
        self.uploads.hand_on(job_id, upload, inspection, options)
        return DetectJobCreated(job_id=job_id, status=DetectStatus.UPLOADED)

    async def view(self, job_id: uuid.UUID, caller: Caller) -> DetectJobOut:
        async with self.sessions() as session:
            row = await self._row(session, job_id, caller)
            status = await self._status(session, row)
            job = await jobs_repo.get_job(session, job_id) if row.job_ref else None
            pages = await jobs_repo.get_job_pages(session, job_id) if job is not None else []
        detect_result = await self._read_result(row) if row.result_key else None
        ocr_result = (
            OcrResult(pages=[recognized_page(page) for page in pages])
            if status == DetectStatus.DONE
            else None
        )
        return DetectJobOut(
            job_id=job_id,
            status=status,
            filename=job.filename if job is not None else None,
            page_count=job.total_page_number if job is not None else None,
            error=row.error or (job.error if job is not None else None),
            detect_result=detect_result,
            ocr_result=ocr_result,
        )

    async def detect_result(self, job_id: uuid.UUID, caller: Caller) -> DetectResult:
        """The job's detect result; 409 before detection is done."""
        async with self.sessions() as session:
            row = await self._row(session, job_id, caller)
            status = await self._status(session, row)
        if row.result_key is None:
            raise _wrong(status, "read the boxes of")
        return await self._read_result(row)

    # ------------------------------------------------------------ editing and recognising

    async def replace_boxes(
        self,
        job_id: uuid.UUID,
        caller: Caller,
        body: AsyncIterator[bytes],
        content_length: str | None,
    ) -> DetectResult:
        """Replace the whole detect result, or change nothing (a 422 names the bad field).
        The body is read under MAX_JSON_BODY_BYTES, as a task's is."""
        row = await self._require(job_id, caller, EDITABLE, "replace the boxes of")
        raw = await read_body(body, content_length, max_bytes=self.settings.max_json_body_bytes)
        patch = parse_patch(raw)
        del raw
        stored = await self._read_result(row)
        pages = validate_patch(job_id, patch, stored)
        async with self.sessions.begin() as session:
            locked = await repo.get(session, job_id, tenant=caller.scope, lock=True)
            if locked is None:
                raise NotFound(f"job {job_id} does not exist")
            if locked.status not in EDITABLE:
                raise _wrong(locked.status, "replace the boxes of")
            version = locked.result_version + 1
            result = DetectResult(job_id=job_id, version=version, pages=pages)
            replaced = await self._write_result(
                session, result, locked.result_key, status=DetectStatus(locked.status)
            )
        await self._forget(replaced)
        log.info(
            "detect result replaced job_id=%s version=%d boxes=%d",
            job_id,
            version,
            sum(len(page.boxes) for page in pages),
        )
        return result

    async def run_ocr(self, job_id: uuid.UUID, caller: Caller) -> DetectJobCreated:
        """Recognise exactly the stored boxes: every page back to the workers as `recognize`
        with its boxes, published at once (unless an operator's stop is in force)."""
        row = await self._require(job_id, caller, RUNNABLE, "run OCR on")
        result = await self._read_result(row)
        boxes = {
            page.page_index + 1: [box.model_dump(exclude_none=True) for box in page.boxes]
            for page in result.pages
        }
        async with self.sessions.begin() as session:
            job = await jobs_repo.lock_job(session, job_id)
            locked = await repo.get(session, job_id, tenant=caller.scope, lock=True)
            if job is None or locked is None:
                raise NotFound(f"job {job_id} does not exist")
            if locked.status not in RUNNABLE or locked.result_version != result.version:
                # Changed since it was read (a PATCH, or another run-ocr): ask again.
                raise _wrong(locked.status, "run OCR on")
            before = job.status
            await repo.reopen_for_recognition(session, job_id, boxes)
            status = await jobs_repo.refresh_job_progress(session, job_id)
            await events_repo.record_status_change(session, job_id, before, status)
            await repo.set_status(session, job_id, DetectStatus.OCR_RUNNING)
            if not await tasks_repo.stopped_for_share(session):
                await dispatch_repo.add_dispatch_request(session, job_id)
                await dispatch_repo.notify_dispatchers(session, "start")
        log.info("detect job recognising job_id=%s version=%d", job_id, result.version)
        return DetectJobCreated(job_id=job_id, status=DetectStatus.OCR_RUNNING)

    # ------------------------------------------------------------ helpers

    async def _row(self, session: AsyncSession, job_id: uuid.UUID, caller: Caller) -> DetectJob:
        row = await repo.get(session, job_id, tenant=caller.scope)
        if row is None or (
            row.status != DetectStatus.PENDING_UPLOAD and row.job_ref is None
        ):  # an uploaded job whose `jobs` row was deleted is gone
            raise NotFound(f"job {job_id} does not exist")
        return row

    async def _status(self, session: AsyncSession, row: DetectJob) -> DetectStatus:
        """The status a client sees: the stored one, DETECTING once an UPLOADED job's pages
        are published, FAILED once its job failed or was cancelled."""
        status = DetectStatus(row.status)
        if row.job_ref is not None and status not in (DetectStatus.FAILED, DetectStatus.DONE):
            job = await jobs_repo.get_job(session, row.job_id)
            if job is not None and job.status in ENDED_JOB:
                return DetectStatus.FAILED
        if status == DetectStatus.UPLOADED and await repo.pages_in_flight(session, row.job_id):
            return DetectStatus.DETECTING
        return status

    async def _require(
        self, job_id: uuid.UUID, caller: Caller, allowed: frozenset[DetectStatus], doing: str
    ) -> DetectJob:
        async with self.sessions() as session:
            row = await self._row(session, job_id, caller)
            status = await self._status(session, row)
        if status not in allowed:
            raise _wrong(status, doing)
        return row

    async def _read_result(self, row: DetectJob) -> DetectResult:
        assert row.result_key is not None
        return DetectResult.model_validate_json(await self.store.get_bytes(row.result_key))

    async def _write_result(
        self,
        session: AsyncSession,
        result: DetectResult,
        old_key: str | None,
        *,
        status: DetectStatus,
    ) -> str | None:
        """Write the new object, then point the row at it in `session`'s transaction; return
        the key it replaces (the caller deletes it once the transaction committed). If the
        transaction fails, the new object is deleted and the row still names the old one."""
        key = result_key(result.job_id, result.version)
        await self.store.put_bytes(key, encode_result(result), content_type="application/json")
        try:
            await repo.point_at_result(
                session, result.job_id, key=key, version=result.version, status=status
            )
        except BaseException:
            await self._forget(key)
            raise
        return old_key

    async def _forget(self, key: str | None) -> None:
        if key is None:
            return
        try:
            await self.store.delete(key)
        except Exception as exc:  # an old version left behind is harmless: nothing names it
            log.warning("old detect result not deleted key=%s: %s", key, exc)

    # ------------------------------------------------------------ results

    async def after_result(
        self, session: AsyncSession, job_id: uuid.UUID, job_status: str | None
    ) -> None:
        """In a result's transaction, under the job's row lock: move a detect-first job on
        when its pages are all detected, or all recognised, or its job failed."""
        row = await repo.lock_by_job(session, job_id)
        if row is None or job_status is None:
            return
        status = DetectStatus(row.status)
        if job_status in ENDED_JOB and status != DetectStatus.FAILED:
            await repo.set_status(
                session, job_id, DetectStatus.FAILED, error=await _failure(session, job_id)
            )
        elif job_status != JobStatus.COMPLETED:
            return
        elif status == DetectStatus.UPLOADED:
            pages = await jobs_repo.get_job_pages(session, job_id)
            result = DetectResult(
                job_id=job_id, version=1, pages=await self._detected_pages(job_id, pages)
            )
            await self._write_result(session, result, None, status=DetectStatus.DETECT_DONE)
            log.info("detect job detected job_id=%s pages=%d", job_id, len(pages))
        elif status == DetectStatus.OCR_RUNNING:
            await repo.set_status(session, job_id, DetectStatus.DONE)
            log.info("detect job recognised job_id=%s", job_id)

    async def _detected_pages(self, job_id: uuid.UUID, pages: Sequence[Page]) -> list[DetectPage]:
        """Each page's boxes as detected, with its size read from its PNG's header. PNGs are
        read a few at a time and only their headers kept, so a long document's pages are
        never all in memory at once."""
        heads: list[bytes] = []
        for start in range(0, len(pages), SIZE_READS_AT_ONCE):
            batch = pages[start : start + SIZE_READS_AT_ONCE]
            pngs = await asyncio.gather(
                *(self.store.get_bytes(page_key(job_id, page.page_number)) for page in batch)
            )
            heads.extend(png[:24] for png in pngs)
        detected: list[DetectPage] = []
        for page, head in zip(pages, heads, strict=True):
            width, height = png_size(head)
            detected.append(
                DetectPage(
                    page_index=page.page_number - 1,
                    width=width,
                    height=height,
                    boxes=detected_boxes(page),
                )
            )
        return detected


async def _failure(session: AsyncSession, job_id: uuid.UUID) -> str:
    job = await jobs_repo.get_job(session, job_id)
    if job is not None and job.error:
        return job.error
    pages = await jobs_repo.get_job_pages(session, job_id)
    failed = [page for page in pages if page.status == PageStatus.FAILED]
    return "; ".join(
        f"page {page.page_number - 1}: {page.error or 'failed'}" for page in failed[:5]
    )


def _wrong(status: str, doing: str) -> WrongState:
    return WrongState(f"cannot {doing} a job in status {status}", status=str(status))
