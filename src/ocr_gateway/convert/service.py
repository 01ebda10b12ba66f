"""`ConvertService`: a batch of files in as one job whose pages are searched for tables, and
its workbook out.

A batch is accepted as `POST /jobs` accepts one (`uploads/spool.spool_files`: limits, sniffing,
all or nothing, a refused file named by its `index`), each file inspected by the uploads'
inspection, then merged into one PDF in the inspect pool (`convert/merge.py`), which is the
job's source file: its pages are every page of every file, in order. The job is recorded by
`UploadService.record_jobs` (quotas, dedup), with `extract_tables`, `source_files` and its
workbook's `downloads` row in the same transaction, and rendered like any upload; the
dispatcher publishes it on an operator's start, or at once with `DISPATCH_MODE=auto`.

The workbook is built in the render pool from the pages' tables and texts
(`convert/workbook.py`) in a scratch folder at the first download of the job as it is, and
stored as the job's artefact `tables-<key>.xlsx`, the key changing whenever the job does (as
exports are kept); deleting the job removes it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import anyio
import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from ocr_gateway.convert import KIND_CONVERT, WORKBOOK_READY
from ocr_gateway.convert import repository as repo
from ocr_gateway.convert.merge import MergedBatch, merge_files
from ocr_gateway.convert.schemas import ConvertAccepted, ConvertedFile
from ocr_gateway.convert.workbook import XLSX_MEDIA_TYPE, build_workbook
from ocr_gateway.core.errors import (
    BadUpload,
    Conflict,
    NotFound,
    ServiceUnavailable,
    document_refusal,
)
from ocr_gateway.core.process_pool import ProcessPool, TaskTimedOut, WorkerLost
from ocr_gateway.core.settings import Settings
from ocr_gateway.db.engine import SessionFactory
from ocr_gateway.db.models import Job, JobStatus, TextLayer
from ocr_gateway.exports.formats import export_key
from ocr_gateway.jobs import repository as jobs_repo
from ocr_gateway.rendering.storage import Storage
from ocr_gateway.storage import ArtefactStore, StoredFile
from ocr_gateway.storage.keys import job_artefact_key, job_prefix
from ocr_gateway.tenants import quotas
from ocr_gateway.tenants.access import Caller
from ocr_gateway.uploads.dedup import dedup_key
from ocr_gateway.uploads.media import MediaType
from ocr_gateway.uploads.options import TEXT_LAYER_FIELD, read_options
from ocr_gateway.uploads.service import BATCH_TYPES, UPLOAD_TEXT_FIELDS, UploadService
from ocr_gateway.uploads.spool import SpooledUpload, TextFields, spool_files

log = logging.getLogger(__name__)

# A batch reads born-digital pages from their text layer unless it says `text_layer=off`:
# their tables are exact from it, with no OCR.
DEFAULT_TEXT_LAYER = TextLayer.AUTO
# Pages read from the database at a time for a workbook's manifest.
BATCH_PAGES = 200
# The workbook's artefact name: `tables-<key>.xlsx`.
WORKBOOK_PREFIX = "tables-"
WORKBOOK_SUFFIX = ".xlsx"
# A workbook's time limit: a base plus a share per page.
BUILD_BASE_S = 60.0
BUILD_PER_PAGE_S = 0.5
# What a workbook's file name keeps of the first file's name.
UNSAFE_NAME_CHARS = re.compile(r"[^\w.\- ]+")
MAX_NAME_STEM = 80


@dataclass(frozen=True, slots=True)
class Workbook:
    """A workbook in the store, and the file name the client is given."""

    stored: StoredFile
    filename: str


class ConvertService:
    def __init__(
        self,
        settings: Settings,
        sessions: SessionFactory,
        storage: Storage,
        store: ArtefactStore,
        uploads: UploadService,
        render_pool: ProcessPool,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.storage = storage
        self.store = store
        self.uploads = uploads
        self.render_pool = render_pool
        # One build per workbook in this process, by key; every request for it waits on it.
        self._building: dict[str, asyncio.Task[StoredFile]] = {}

    # ------------------------------------------------------------ accepting

    async def accept(
        self,
        body: AsyncIterator[bytes],
        content_type: str | None,
        content_length: str | None,
        caller: Caller,
        query: Mapping[str, str],
    ) -> ConvertAccepted:
        """Spool, inspect, merge and record the batch as one job for `caller`'s tenant, then
        render it in the background. A refusal leaves no file and no row behind; a batch
        identical to a live job of the tenant answers that job, `deduplicated`."""
        settings = self.settings
        await quotas.precheck_quotas(self.sessions, settings, caller.tenant)
        job_id = uuid.uuid4()
        source = self.storage.temp_path(job_id)

        def part_path(index: int) -> Path:
            return source.with_suffix(f".{index}.part")

        texts = TextFields(UPLOAD_TEXT_FIELDS)
        parts = await spool_files(
            body,
            content_type,
            content_length,
            part_path,
            max_bytes=settings.max_upload_bytes,
            max_files=settings.max_files_per_request,
            accepted=BATCH_TYPES,
            texts=texts,
        )
        try:
            owner = await self.uploads.owner(caller, texts)
            options = read_options(
                {TEXT_LAYER_FIELD: DEFAULT_TEXT_LAYER.value, **query}, texts.values, settings
            )
            await self.uploads.inspect_batch(parts)
            merged = await self._merge(parts, source)
            files = [
                ConvertedFile(index=index, filename=part.filename, total_page_number=pages)
                for index, (part, pages) in enumerate(
                    zip(parts, merged.pages_per_file, strict=True)
                )
            ]
            size = (await anyio.Path(source).stat()).st_size
            merged_upload = SpooledUpload(source, _job_filename(parts), MediaType.PDF, size)
            key = (
                dedup_key(
                    KIND_CONVERT,
                    {TEXT_LAYER_FIELD: options.text_layer.value},
                    *(part.sha256 for part in parts),
                )
                if options.dedup
                else None
            )

            async def mark(session: AsyncSession) -> None:
                await repo.mark_convert_job(
                    session,
                    job_id,
                    source_files=[file.model_dump() for file in files],
                    file_id=uuid.uuid4(),
                    filename=_workbook_filename(parts[0].filename, len(parts)),
                )

            (recorded,) = await self.uploads.record_jobs(
                [(job_id, merged_upload, merged.inspection)],
                owner,
                options=options,
                dedup_keys=[key],
                then=mark,
            )
        except BaseException:
            await self.storage.remove_file(source)
            raise
        finally:
            for part in parts:
                await self.storage.remove_file(part.path)
        if recorded.deduplicated:
            await self.storage.remove_file(source)
            log.info("convert batch deduplicated job_id=%s", recorded.job_id)
            return await self._existing(recorded.job_id)
        self.uploads.hand_on(job_id, merged_upload, merged.inspection, options, tables=True)
        log.info(
            "convert batch accepted job_id=%s files=%d pages=%d",
            job_id,
            len(files),
            merged.inspection.page_count,
        )
        return ConvertAccepted(job_id=job_id, status=JobStatus.PENDING, files=files)

    async def _merge(self, parts: list[SpooledUpload], target: Path) -> MergedBatch:
        """Merge the files in the inspect pool, held to the limits of one upload."""
        pool = self.uploads.inspect_pool
        try:
            merged = await pool.run(
                merge_files,
                [(str(part.path), part.media_type.value) for part in parts],
                str(target),
                self.uploads.limits,
                self.uploads.renderer.options,
                timeout=self.settings.inspect_timeout_s,
            )
        except TaskTimedOut as exc:
            raise BadUpload(
                "the files could not be merged within the limit of"
                f" {self.settings.inspect_timeout_s:g} s (INSPECT_TIMEOUT_S)"
            ) from exc
        except WorkerLost as exc:
            raise ServiceUnavailable(
                f"the files cannot be merged right now ({exc}); try again shortly"
            ) from exc
        if merged.inspection.problem is not None:
            raise document_refusal(merged.inspection.problem, merged.inspection.detail)
        return merged

    async def _existing(self, job_id: uuid.UUID) -> ConvertAccepted:
        async with self.sessions() as session:
            job = await jobs_repo.get_job(session, job_id)
        if job is None:  # deleted in the meantime: the client sends the batch again
            raise Conflict(f"job {job_id}, the same batch sent before, was just deleted")
        files = [ConvertedFile.model_validate(file) for file in job.source_files or []]
        return ConvertAccepted(job_id=job_id, status=job.status, files=files, deduplicated=True)

    # ------------------------------------------------------------ downloads

    async def workbook(self, file_id: uuid.UUID, *, scope: str | None) -> Workbook:
        """The download's workbook, built now unless the job as it is now has one: 404 for a
        file that does not exist (or whose job is another tenant's than `scope`), 409 (with
        the job's status) while the job is not done."""
        async with self.sessions() as session:
            found = await repo.get_download(session, file_id, tenant=scope)
        if found is None:
            raise NotFound(f"file {file_id} does not exist")
        download, job = found
        if JobStatus(job.status) not in WORKBOOK_READY:
            raise Conflict(
                f"file {file_id} is made once its job is done; job {job.job_id} is {job.status}"
            ).add_fields(job_id=str(job.job_id), status=job.status)
        key = export_key(
            job.status,
            job.updated_at.timestamp(),
            job.rendered_pages,
            job.completed_pages,
            job.failed_pages,
        )
        target = job_artefact_key(job.job_id, f"{WORKBOOK_PREFIX}{key}{WORKBOOK_SUFFIX}")
        size = await self.store.size(target)
        if size is not None:
            return Workbook(StoredFile(target, size, XLSX_MEDIA_TYPE), download.filename)
        build = self._building.get(target)
        if build is None:
            build = asyncio.create_task(self._build(job, target), name=f"workbook {target}")
            self._building[target] = build
            build.add_done_callback(lambda done: self._built(target, done))
        # A client that goes away stops waiting; the build goes on for the next request.
        return Workbook(await asyncio.shield(build), download.filename)

    def _built(self, target: str, build: asyncio.Task[StoredFile]) -> None:
        self._building.pop(target, None)
        if not build.cancelled() and build.exception() is not None:
            log.warning("workbook failed target=%s error=%r", target, build.exception())

    async def _build(self, job: Job, target: str) -> StoredFile:
        started = asyncio.get_running_loop().time()
        timeout = BUILD_BASE_S + BUILD_PER_PAGE_S * job.total_page_number
        async with self.storage.scratch() as folder:
            manifest = folder / "manifest.jsonl"
            built = folder / f"workbook{WORKBOOK_SUFFIX}"
            await self._write_manifest(job.job_id, manifest)
            try:
                sheets = await self.render_pool.run(
                    build_workbook,
                    str(manifest),
                    job.source_files or [],
                    str(built),
                    timeout=timeout,
                )
            except WorkerLost as exc:
                raise ServiceUnavailable(f"the workbook could not be built: {exc}") from exc
            size = (await anyio.Path(built).stat()).st_size
            async with self.sessions() as session:
                if await jobs_repo.get_job(session, job.job_id) is None:
                    raise NotFound(f"job {job.job_id} was deleted while its workbook was built")
            await self.store.put_file(target, built, content_type=XLSX_MEDIA_TYPE, move=True)
        for older in await self.store.list_keys(job_prefix(job.job_id)):
            name = older.rsplit("/", 1)[-1]
            if (
                older != target
                and name.startswith(WORKBOOK_PREFIX)
                and name.endswith(WORKBOOK_SUFFIX)
            ):
                await self.store.delete(older)
        log.info(
            "workbook built job_id=%s sheets=%d seconds=%.2f",
            job.job_id,
            sheets,
            asyncio.get_running_loop().time() - started,
        )
        return StoredFile(target, size, XLSX_MEDIA_TYPE)

    async def _write_manifest(self, job_id: uuid.UUID, manifest: Path) -> None:
        """The job's pages, one JSON object a line, for the builder to read; a batch of pages
        at a time, each in a short session of its own."""
        async with await anyio.open_file(manifest, "wb") as out:
            after = 0
            while True:
                async with self.sessions() as session:
                    rows = await repo.page_batch(session, job_id, after=after, limit=BATCH_PAGES)
                await out.write(
                    b"".join(
                        orjson.dumps(
                            {
                                "page_number": number,
                                "status": status,
                                "text": text,
                                "tables": tables,
                                "error": error,
                            }
                        )
                        + b"\n"
                        for number, status, text, tables, error in rows
                    )
                )
                if len(rows) < BATCH_PAGES:
                    return
                after = rows[-1].page_number


def _job_filename(parts: list[SpooledUpload]) -> str:
    """The job's `filename`: the file's own for a batch of one, else a count of the files."""
    return parts[0].filename if len(parts) == 1 else f"batch of {len(parts)} files"


def _workbook_filename(first: str, files: int) -> str:
    """`<first file's stem>.xlsx`, `<stem>-and-2-more.xlsx`: plain characters only, as it is
    sent in a Content-Disposition header."""
    stem = first.rsplit(".", 1)[0] if "." in first.strip(".") else first
    stem = " ".join(UNSAFE_NAME_CHARS.sub("_", stem).split())[:MAX_NAME_STEM].strip(" .")
    stem = stem or "tables"
    return f"{stem}-and-{files - 1}-more.xlsx" if files > 1 else f"{stem}.xlsx"
