"""Accepting an upload: spool it, inspect it within the limits, record its job, hand it on.

A refused upload raises a GatewayError and leaves no file and no row behind; an accepted one is
rendered in the background by the `Renderer`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from ocr_gateway.core.errors import BadUpload, PageTooLarge, TooManyPages
from ocr_gateway.core.process_pool import ProcessPool, WorkerLost
from ocr_gateway.core.settings import Settings
from ocr_gateway.db.engine import SessionFactory
from ocr_gateway.jobs import repository as jobs_repo
from ocr_gateway.rendering.inspection import Inspection, inspect_document
from ocr_gateway.rendering.service import Renderer
from ocr_gateway.rendering.storage import Storage
from ocr_gateway.uploads.media import MediaType
from ocr_gateway.uploads.spool import spool_upload

log = logging.getLogger(__name__)

INSPECT_TIMEOUT_S = 60.0


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
        inspect_pool: ProcessPool,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.storage = storage
        self.renderer = renderer
        self.inspect_pool = inspect_pool

    async def accept_upload(
        self,
        body: AsyncIterator[bytes],
        content_type: str | None,
        content_length: str | None,
        accepted: frozenset[MediaType],
    ) -> AcceptedUpload:
        """Spool, inspect and record an upload, then render it in the background.

        A refused upload raises a GatewayError and leaves no file and no row behind.
        """
        job_id = uuid.uuid4()
        temp_path = self.storage.temp_path(job_id)
        upload = await spool_upload(
            body,
            content_type,
            content_length,
            temp_path,
            max_bytes=self.settings.max_upload_bytes,
            accepted=accepted,
        )
        try:
            inspection = await self._inspect(str(temp_path), upload.media_type)
            async with self.sessions.begin() as session:
                await jobs_repo.create_job(
                    session,
                    job_id=job_id,
                    filename=upload.filename,
                    media_type=upload.media_type,
                    total_page_number=inspection.page_count,
                    render_lease_s=self.settings.render_lease_s,
                )
        except BaseException:
            await self.storage.remove_file(temp_path)
            raise
        log.info(
            "upload accepted job_id=%s filename=%r media_type=%s bytes=%d pages=%d",
            job_id,
            upload.filename,
            upload.media_type,
            upload.size,
            inspection.page_count,
        )
        self.renderer.schedule(
            job_id, upload.media_type, range(1, inspection.page_count + 1), attempt=1
        )
        return AcceptedUpload(job_id, upload.filename, upload.media_type, inspection.page_count)

    async def _inspect(self, path: str, media_type: MediaType) -> Inspection:
        try:
            result = await self.inspect_pool.run(
                inspect_document,
                path,
                media_type.value,
                self.settings.max_pages,
                self.renderer.options,
                timeout=INSPECT_TIMEOUT_S,
            )
        except WorkerLost as exc:
            raise BadUpload(f"the document could not be parsed ({exc})") from exc
        if result.problem is None:
            return result
        log.info("upload refused problem=%s detail=%s", result.problem, result.detail)
        if result.problem == "too_many_pages":
            raise TooManyPages(result.detail)
        if result.problem == "page_too_large":
            raise PageTooLarge(result.detail)
        raise BadUpload(result.detail)

    # ------------------------------------------------------------ rendering

    async def remove_orphan_uploads(self) -> None:
        async with self.sessions() as session:
            known = await jobs_repo.all_job_ids(session)
        removed = await self.storage.remove_orphan_uploads(known, self.settings.orphan_temp_age_s)
        for path in removed:
            log.info("orphaned upload removed path=%s", path.name)
