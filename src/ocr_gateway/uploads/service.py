"""Accepting an upload: spool it, inspect it within the limits, record its job, hand it on.

A refused upload raises a GatewayError and leaves no file and no row behind; an accepted one is
rendered in the background by the `Renderer`. A batch (`accept_batch`) is all or nothing: its
files are spooled and inspected, then all its jobs are recorded in one transaction, and a
refusal of any file (naming its `index`) keeps none of them.

An upload identical to a live job of the tenant (same dedup key, uploads/dedup.py) is answered
with that job (`deduplicated`): its temp file is removed, nothing is rendered, and its pages are
not charged to the tenant's quotas.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from ocr_gateway.core.errors import (
    BadUpload,
    GatewayError,
    InvalidField,
    ServiceUnavailable,
    document_refusal,
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
from ocr_gateway.db.models import CallbackEvents, Job, JobStatus, TextLayer
from ocr_gateway.jobs import repository as jobs_repo
from ocr_gateway.rendering.inspection import Inspection, Limits, inspect_document
from ocr_gateway.rendering.mupdf import warm_up
from ocr_gateway.rendering.service import Renderer
from ocr_gateway.rendering.storage import Storage
from ocr_gateway.tenants import quotas
from ocr_gateway.tenants import repository as tenants_repo
from ocr_gateway.tenants import usage as usage_repo
from ocr_gateway.tenants.access import Caller
from ocr_gateway.uploads.dedup import KIND_OCR, dedup_key
from ocr_gateway.uploads.media import IMAGE_TYPES, PDF_TYPES, MediaType
from ocr_gateway.uploads.options import OPTION_FIELDS, UploadOptions, read_options
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
UPLOAD_TEXT_FIELDS = frozenset({CALLBACK_URL_FIELD, CALLBACK_EVENTS_FIELD}) | OPTION_FIELDS
# Tries at recording a job whose live duplicate vanished (failed, cancelled, deleted) between
# the insert that met it and the read that looked for it.
DEDUP_INSERT_TRIES = 3


@dataclass(frozen=True, slots=True)
class JobOwner:
    """Whose the new jobs are, and where their webhooks go (None: the tenant's default)."""

    tenant: str
    callback_url: str | None = None
    callback_events: CallbackEvents = CallbackEvents.JOB


@dataclass(frozen=True, slots=True)
class AcceptedUpload:
    """A job made for an upload, or (`deduplicated`) the live job an identical upload made."""

    job_id: uuid.UUID
    filename: str
    media_type: MediaType
    total_page_number: int
    deduplicated: bool = False
    status: str = JobStatus.PENDING.value


@dataclass(frozen=True, slots=True)
class RecordedJob:
    """One job of `record_jobs`: inserted, or the existing live job with the same dedup key."""

    job_id: uuid.UUID
    deduplicated: bool
    filename: str
    media_type: str
    total_page_number: int
    status: str

    @classmethod
    def of(cls, job: Job) -> RecordedJob:
        return cls(
            job.job_id, True, job.filename, job.media_type, job.total_page_number, job.status
        )

    def accepted(self) -> AcceptedUpload:
        return AcceptedUpload(
            self.job_id,
            self.filename,
            MediaType(self.media_type),
            self.total_page_number,
            deduplicated=self.deduplicated,
            status=self.status,
        )


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
        query: Mapping[str, str] | None = None,
    ) -> AcceptedUpload:
        """Spool, inspect and record an upload for `caller`'s tenant, then render it in the
        background. Its options (`text_layer`, `dedup`) come from its form fields or `query`.

        A refused upload raises a GatewayError and leaves no file and no row behind. An upload
        identical to a live job of the tenant answers that job, `deduplicated`, and keeps
        nothing of its own.
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
            options = read_options(query or {}, texts.values, self.settings)
            inspection = await self._inspect(str(temp_path), upload.media_type)
            (recorded,) = await self.record_jobs(
                [(job_id, upload, inspection)],
                owner,
                options=options,
                dedup_keys=[self.upload_key(upload, options)],
            )
        except BaseException:
            await self.storage.remove_file(temp_path)
            raise
        if recorded.deduplicated:
            await self.storage.remove_file(temp_path)
            log.info("upload deduplicated job_id=%s", recorded.job_id)
            return recorded.accepted()
        return self.hand_on(job_id, upload, inspection, options)

    async def accept_batch(
        self,
        body: AsyncIterator[bytes],
        content_type: str | None,
        content_length: str | None,
        caller: Caller,
        query: Mapping[str, str] | None = None,
    ) -> list[AcceptedUpload]:
        """Spool, inspect and record every `files` part of a batch, in the order sent, then
        render each in the background. Each file is deduplicated on its own: a file identical
        to a live job of the tenant (or to an earlier file of the batch) answers that job.

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
            options = read_options(query or {}, texts.values, self.settings)
            inspections = await self.inspect_batch(uploads)
            batch = list(zip(job_ids, uploads, inspections, strict=True))
            recorded = await self.record_jobs(
                batch,
                owner,
                options=options,
                dedup_keys=[self.upload_key(upload, options) for upload in uploads],
            )
        except BaseException:
            for upload in uploads:
                await self.storage.remove_file(upload.path)
            raise
        answers: list[AcceptedUpload] = []
        for (job_id, upload, inspection), job in zip(batch, recorded, strict=True):
            if job.deduplicated:
                await self.storage.remove_file(upload.path)
                answers.append(job.accepted())
            else:
                answers.append(self.hand_on(job_id, upload, inspection, options))
        log.info(
            "batch accepted files=%d deduplicated=%d",
            len(batch),
            sum(job.deduplicated for job in recorded),
        )
        return answers

    @staticmethod
    def upload_key(upload: SpooledUpload, options: UploadOptions) -> bytes | None:
        """The dedup key of a one-file OCR job, or None when the client sent `dedup=false`."""
        if not options.dedup:
            return None
        return dedup_key(KIND_OCR, options.key_options(upload.media_type), upload.sha256)

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

    async def owner(self, caller: Caller, texts: TextFields) -> JobOwner:
        """The new job's owner, for a route that spools its own files (`/convert/batch`)."""
        return await self._owner(caller, texts)

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
        options: UploadOptions | None = None,
        dedup_keys: Sequence[bytes | None] | None = None,
        then: Callable[[AsyncSession], Awaitable[None]] | None = None,
    ) -> list[RecordedJob]:
        """Insert the jobs (`pending`) in one transaction: all of them or none, within the
        tenant's quotas (checked under its lock, so concurrent uploads cannot overshoot).
        `then` adds its own statements to that transaction (a task's columns and its start).

        `dedup_keys` (one per job, None for none) makes a job whose key matches a live job of
        the tenant come back as that job (`deduplicated`) instead of being inserted; only the
        jobs inserted count against the quotas. The insert decides, through the unique index,
        so two identical uploads at once record one job. The caller must not render a
        deduplicated job's upload, and removes its file.

        A store that cannot be reached refuses the jobs first (`StorageUnavailable`, 503):
        no job is recorded whose pages could not be stored.
        """
        await self.renderer.store.check()
        options = options or UploadOptions(text_layer=TextLayer(self.settings.text_layer))
        keys = list(dedup_keys) if dedup_keys is not None else [None] * len(jobs)
        if len(keys) != len(jobs):
            raise ValueError("one dedup key (or None) per job")
        async with self.sessions.begin() as session:
            await tenants_repo.ensure_tenant(session, owner.tenant)
            # The quota lock serialises the tenant's uploads, so the duplicates found here are
            # the ones the inserts below will meet; they are left out of the quota check.
            await usage_repo.lock_tenant_quota(session, owner.tenant)
            known: set[bytes] = set()
            for wanted in {key for key in keys if key is not None}:
                if await jobs_repo.find_live_duplicate(session, owner.tenant, wanted):
                    known.add(wanted)
            new_jobs, new_pages = 0, 0
            for (_, _, inspection), key in zip(jobs, keys, strict=True):
                if key is None or key not in known:
                    new_jobs += 1
                    new_pages += inspection.page_count
                    if key is not None:
                        known.add(key)  # a later identical file of the batch adds nothing
            await quotas.enforce_quotas(
                session,
                self.settings,
                owner.tenant,
                new_jobs=new_jobs,
                new_pages=new_pages,
            )
            recorded = [
                await self._record_job(session, job_id, upload, inspection, owner, options, key)
                for (job_id, upload, inspection), key in zip(jobs, keys, strict=True)
            ]
            if then is not None:
                await then(session)
        return recorded

    async def _record_job(
        self,
        session: AsyncSession,
        job_id: uuid.UUID,
        upload: SpooledUpload,
        inspection: Inspection,
        owner: JobOwner,
        options: UploadOptions,
        key: bytes | None,
    ) -> RecordedJob:
        """Insert one job, or find the live job its dedup key already names."""
        for _ in range(DEDUP_INSERT_TRIES):
            inserted = await jobs_repo.create_job(
                session,
                job_id=job_id,
                tenant=owner.tenant,
                filename=upload.filename,
                media_type=upload.media_type,
                total_page_number=inspection.page_count,
                render_lease_s=self.settings.render_lease_s,
                callback_url=owner.callback_url,
                callback_events=owner.callback_events,
                dedup_key=key,
                text_layer=options.text_layer_for(upload.media_type),
                priority=options.priority,
            )
            if inserted:
                return RecordedJob(
                    job_id,
                    False,
                    upload.filename,
                    upload.media_type.value,
                    inspection.page_count,
                    JobStatus.PENDING.value,
                )
            assert key is not None, "a job without a dedup key always inserts"
            existing = await jobs_repo.find_live_duplicate(session, owner.tenant, key)
            if existing is not None:
                return RecordedJob.of(existing)
        raise ServiceUnavailable(
            "an identical upload's job kept changing while this one was recorded; try again",
            retry_after_s=RETRY_AFTER_S,
        )

    def hand_on(
        self,
        job_id: uuid.UUID,
        upload: SpooledUpload,
        inspection: Inspection,
        options: UploadOptions | None = None,
        *,
        tables: bool = False,
    ) -> AcceptedUpload:
        """Log a recorded job and schedule its rendering (reading PDF pages' text layers
        first when `options.text_layer` is `auto`, and their tables too with `tables`)."""
        options = options or UploadOptions(text_layer=TextLayer(self.settings.text_layer))
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
            text_layer=options.text_layer_for(upload.media_type) == TextLayer.AUTO,
            tables=tables,
        )
        return AcceptedUpload(job_id, upload.filename, upload.media_type, inspection.page_count)

    async def _inspect(self, path: str, media_type: MediaType) -> Inspection:
        result = await self._run_inspection(path, media_type)
        if result.problem is None:
            return result
        log.info("upload refused problem=%s detail=%s", result.problem, result.detail)
        raise document_refusal(result.problem, result.detail)

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
