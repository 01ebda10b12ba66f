"""Accepting an upload: spool it, inspect it within the limits, record its job, hand it on.

A refused upload raises a GatewayError and leaves no file and no row behind; an accepted one is
rendered in the background by the `Renderer`. A batch (`accept_batch`) is all or nothing: its
files are spooled and inspected, then all its jobs are recorded in one transaction, and a
refusal of any file (naming its `index`) keeps none of them.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from ocr_gateway.core.errors import (
    BadUpload,
    DocumentTooLarge,
    GatewayError,
    InvalidField,
    PageTooLarge,
    ServiceUnavailable,
    TooManyPages,
)
from ocr_gateway.core.process_pool import (
    IsolatedPool,
    PoolUnavailable,
    ProcessPool,
    TaskTimedOut,
    WorkerLost,
)
from ocr_gateway.core.settings import Settings
from ocr_gateway.db.engine import SessionFactory
from ocr_gateway.db.models import CallbackEvents
from ocr_gateway.jobs import repository as jobs_repo
from ocr_gateway.rendering.inspection import Inspection, Limits, inspect_document
from ocr_gateway.rendering.mupdf import warm_up
from ocr_gateway.rendering.service import Renderer
from ocr_gateway.rendering.storage import Storage
from ocr_gateway.tenants import quotas
from ocr_gateway.tenants import repository as tenants_repo
from ocr_gateway.tenants.access import Caller
from ocr_gateway.uploads.media import IMAGE_TYPES, PDF_TYPES, MediaType
from ocr_gateway.uploads.spool import SpooledUpload, TextFields, spool_files, spool_upload
from ocr_gateway.webhooks.guard import check_callback_url

log = logging.getLogger(__name__)

# Runs of one upload's inspection: a pool found broken costs a run, and so does a worker that
# died under the inspection (which may be the document's doing, or a kill from outside).
INSPECT_RUNS = 3
# Tries at proving, with a trivial task, that a rebuilt pool works; then the answer is 503.
POOL_PROBES = 2
PROBE_TIMEOUT_S = 30.0
RETRY_AFTER_S = 5
# A batch takes PDFs and images alike; each file becomes a job of its own.
BATCH_TYPES = PDF_TYPES | IMAGE_TYPES
# The form fields an upload may carry beside its file(s).
CALLBACK_URL_FIELD = "callback_url"
CALLBACK_EVENTS_FIELD = "callback_events"
UPLOAD_TEXT_FIELDS = frozenset({CALLBACK_URL_FIELD, CALLBACK_EVENTS_FIELD})


@dataclass(frozen=True, slots=True)
class JobOwner:
    """Whose the new jobs are, and where their webhooks go (None: the tenant's default)."""

    tenant: str
    callback_url: str | None = None
    callback_events: CallbackEvents = CallbackEvents.JOB


@dataclass(frozen=True, slots=True)
class AcceptedUpload:
    job_id: uuid.UUID
    filename: str
    media_type: MediaType
    total_page_number: int


class UploadService:
    """Owns the upload path: the inspect pool and the temp files of uploads in progress."""

    def __init__(
        self,
        settings: Settings,
        sessions: SessionFactory,
        storage: Storage,
        renderer: Renderer,
        inspect_pool: IsolatedPool | ProcessPool,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.storage = storage
        self.renderer = renderer
        self.inspect_pool = inspect_pool
        self.limits = Limits(
            max_pages=settings.max_pages,
            max_page_pixels=settings.max_page_pixels,
            max_document_pixels=settings.max_document_pixels,
        )

    async def accept_upload(
        self,
        body: AsyncIterator[bytes],
        content_type: str | None,
        content_length: str | None,
        accepted: frozenset[MediaType],
        caller: Caller,
    ) -> AcceptedUpload:
        """Spool, inspect and record an upload for `caller`'s tenant, then render it in the
        background.

        A refused upload raises a GatewayError and leaves no file and no row behind.
        """
        await quotas.precheck_quotas(self.sessions, self.settings, caller.tenant)
        job_id = uuid.uuid4()
        temp_path = self.storage.temp_path(job_id)
        texts = TextFields(UPLOAD_TEXT_FIELDS)
        upload = await spool_upload(
            body,
            content_type,
            content_length,
            temp_path,
            max_bytes=self.settings.max_upload_bytes,
            accepted=accepted,
            texts=texts,
        )
        try:
            owner = await self._owner(caller, texts)
            inspection = await self._inspect(str(temp_path), upload.media_type)
            await self.record_jobs([(job_id, upload, inspection)], owner)
        except BaseException:
            await self.storage.remove_file(temp_path)
            raise
        return self.hand_on(job_id, upload, inspection)

    async def accept_batch(
        self,
        body: AsyncIterator[bytes],
        content_type: str | None,
        content_length: str | None,
        caller: Caller,
    ) -> list[AcceptedUpload]:
        """Spool, inspect and record every `files` part of a batch, in the order sent, then
        render each in the background.

        All or nothing: a refusal raises a GatewayError (with the file's `index` when it is
        about one file) and leaves no file and no row of the batch behind.
        """
        await quotas.precheck_quotas(self.sessions, self.settings, caller.tenant)
        job_ids: list[uuid.UUID] = []

        def temp_path(index: int) -> Path:
            assert index == len(job_ids)
            job_ids.append(uuid.uuid4())
            return self.storage.temp_path(job_ids[index])

        texts = TextFields(UPLOAD_TEXT_FIELDS)
        uploads = await spool_files(
            body,
            content_type,
            content_length,
            temp_path,
            max_bytes=self.settings.max_upload_bytes,
            max_files=self.settings.max_files_per_request,
            accepted=BATCH_TYPES,
            texts=texts,
        )
        try:
            owner = await self._owner(caller, texts)
            inspections = await self.inspect_batch(uploads)
            batch = list(zip(job_ids, uploads, inspections, strict=True))
            await self.record_jobs(batch, owner)
        except BaseException:
            for upload in uploads:
                await self.storage.remove_file(upload.path)
            raise
        log.info("batch accepted files=%d", len(batch))
        return [self.hand_on(*accepted) for accepted in batch]

    async def inspect_batch(self, uploads: Sequence[SpooledUpload]) -> list[Inspection]:
        """Inspect a batch's files (or a task's images) concurrently, each in a process of
        its own.

        At most one fewer than the pool's processes at once, so the pool's first-come queue
        always holds a free turn for other uploads. After a refusal, no further file starts;
        the lowest refused index is raised, carrying that `index`.
        """
        turns = asyncio.Semaphore(max(1, self.inspect_pool.workers - 1))
        refused = False

        async def inspect(index: int, upload: SpooledUpload) -> Inspection | None:
            nonlocal refused
            async with turns:
                if refused:
                    return None
                try:
                    return await self._inspect(str(upload.path), upload.media_type)
                except BaseException as exc:
                    refused = True
                    if isinstance(exc, GatewayError) and exc.status_code < 500:
                        exc.add_fields(index=index)
                    raise

        outcomes = await asyncio.gather(
            *(inspect(index, upload) for index, upload in enumerate(uploads)),
            return_exceptions=True,
        )
        inspections: list[Inspection] = []
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
            assert outcome is not None, "a file was skipped although none was refused"
            inspections.append(outcome)
        return inspections

    async def _owner(self, caller: Caller, texts: TextFields) -> JobOwner:
        """The new jobs' tenant and callback, from the caller and the upload's form fields."""
        url = texts.values.get(CALLBACK_URL_FIELD) or None
        events = texts.values.get(CALLBACK_EVENTS_FIELD) or CallbackEvents.JOB.value
        if events not in set(CallbackEvents):
            wanted = " or ".join(f"'{e}'" for e in CallbackEvents)
            raise InvalidField(f"callback_events must be {wanted}")
        if url is not None:
            url = await check_callback_url(url, self.settings)
        return JobOwner(caller.tenant, url, CallbackEvents(events))

    async def record_jobs(
        self,
        jobs: Sequence[tuple[uuid.UUID, SpooledUpload, Inspection]],
        owner: JobOwner,
        *,
        then: Callable[[AsyncSession], Awaitable[None]] | None = None,
    ) -> None:
        """Insert the jobs (`pending`) in one transaction: all of them or none, within the
        tenant's quotas (checked under its lock, so concurrent uploads cannot overshoot).
        `then` adds its own statements to that transaction (a task's columns and its start)."""
        async with self.sessions.begin() as session:
            await tenants_repo.ensure_tenant(session, owner.tenant)
            await quotas.enforce_quotas(
                session,
                self.settings,
                owner.tenant,
                new_jobs=len(jobs),
                new_pages=sum(inspection.page_count for _, _, inspection in jobs),
            )
            for job_id, upload, inspection in jobs:
                await jobs_repo.create_job(
                    session,
                    job_id=job_id,
                    tenant=owner.tenant,
                    filename=upload.filename,
                    media_type=upload.media_type,
                    total_page_number=inspection.page_count,
                    render_lease_s=self.settings.render_lease_s,
                    callback_url=owner.callback_url,
                    callback_events=owner.callback_events,
                )
            if then is not None:
                await then(session)

    def hand_on(
        self, job_id: uuid.UUID, upload: SpooledUpload, inspection: Inspection
    ) -> AcceptedUpload:
        """Log a recorded job and schedule its rendering."""
        log.info(
            "upload accepted job_id=%s filename=%r media_type=%s bytes=%d pages=%d",
            job_id,
            upload.filename,
            upload.media_type,
            upload.size,
            inspection.page_count,
        )
        self.renderer.schedule(
            job_id,
            upload.media_type,
            range(1, inspection.page_count + 1),
            attempt=1,
            page_pixels=inspection.largest_page_pixels,
        )
        return AcceptedUpload(job_id, upload.filename, upload.media_type, inspection.page_count)

    async def _inspect(self, path: str, media_type: MediaType) -> Inspection:
        result = await self._run_inspection(path, media_type)
        if result.problem is None:
            return result
        log.info("upload refused problem=%s detail=%s", result.problem, result.detail)
        if result.problem == "too_many_pages":
            raise TooManyPages(result.detail)
        if result.problem == "page_too_large":
            raise PageTooLarge(result.detail)
        if result.problem == "document_too_large":
            raise DocumentTooLarge(result.detail)
        raise BadUpload(result.detail)

    async def _run_inspection(self, path: str, media_type: MediaType) -> Inspection:
        """Inspect the upload in the pool, blaming the document only for what it did.

        A pool that fails is rebuilt and proven with a trivial task before the inspection runs
        again; a pool that cannot be made to work is the service's fault (503). The document is
        refused (422) only when its inspection ran over its time, or killed its worker twice,
        the second time on a pool that had just been proven to work.
        """
        crashes = 0
        for _ in range(INSPECT_RUNS):
            try:
                return await self.inspect_pool.run(
                    inspect_document,
                    path,
                    media_type.value,
                    self.limits,
                    self.renderer.options,
                    timeout=self.settings.inspect_timeout_s,
                )
            except TaskTimedOut as exc:
                raise BadUpload(
                    "the document could not be inspected within the limit of"
                    f" {self.settings.inspect_timeout_s:g} s (INSPECT_TIMEOUT_S)"
                ) from exc
            except PoolUnavailable as exc:
                log.warning("inspection not run, the pool is unavailable: %s", exc)
            except WorkerLost as exc:
                crashes += 1
                log.warning("inspection lost its worker path=%s crashes=%d: %s", path, crashes, exc)
                if crashes > 1:
                    raise BadUpload(
                        f"the inspection crashed on this document ({exc}, twice)"
                    ) from exc
            await self._prove_pool()
        raise _pool_unavailable(f"the inspection did not finish in {INSPECT_RUNS} runs")

    async def _prove_pool(self) -> None:
        """Run a trivial task in the inspect pool (rebuilding it if need be), or raise 503."""
        reason = "no probe ran"
        for _ in range(POOL_PROBES):
            try:
                await self.inspect_pool.run(warm_up, timeout=PROBE_TIMEOUT_S)
                return
            except WorkerLost as exc:
                reason = str(exc)
                log.error("inspect pool failed its probe: %s", exc)
        raise _pool_unavailable(reason)

    # ------------------------------------------------------------ rendering

    async def remove_orphan_uploads(self) -> None:
        async with self.sessions() as session:
            known = await jobs_repo.all_job_ids(session)
        removed = await self.storage.remove_orphan_uploads(known, self.settings.orphan_temp_age_s)
        for path in removed:
            log.info("orphaned upload removed path=%s", path.name)


def _pool_unavailable(reason: str) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"uploads cannot be inspected right now ({reason}); try again shortly",
        retry_after_s=RETRY_AFTER_S,
    )
