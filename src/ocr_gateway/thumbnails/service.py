"""`/images`: accept an image, make its thumbnails in the render pool, serve them; and the
thumbnails of job pages, made at their first request.

An image needs no OCR and no operator's start: it is PROCESSING from its upload until its
thumbnails are written (DONE) or cannot be (FAILED, with the reason). The process that accepted
it holds a lease on it while it works; an image whose process died is taken up by the next
process that finds its lease run out (`resume_unfinished`, also at start-up).

Artefacts (storage.keys): `images/<image_id>/original` and `images/<image_id>/<box>.webp`; a
page's thumbnail is `<job_id>/thumbnails/<page_number>-<size>.webp` and goes with the job. The
render pool works on local copies and a scratch folder; what it writes is put in the store.
A store that cannot be reached fails an upload with 503 and leaves an image PROCESSING, handed
back for a later resume, never FAILED for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from ocr_gateway.core.errors import Conflict, GatewayError, NotFound, ServiceUnavailable
from ocr_gateway.core.process_pool import PoolUnavailable, ProcessPool, WorkerLost
from ocr_gateway.core.settings import Settings
from ocr_gateway.db.engine import SessionFactory
from ocr_gateway.db.models import ImageStatus, StoredImage
from ocr_gateway.jobs import repository as jobs_repo
from ocr_gateway.rendering.storage import Storage
from ocr_gateway.storage import ArtefactMissing, ArtefactStore, StorageUnavailable, StoredFile
from ocr_gateway.storage.keys import image_key, image_prefix, page_key, page_thumbnail_key
from ocr_gateway.tenants import repository as tenants_repo
from ocr_gateway.tenants.access import Caller
from ocr_gateway.thumbnails import repository as repo
from ocr_gateway.thumbnails.making import (
    IMAGE_BOXES,
    THUMBNAIL_MEDIA_TYPE,
    Made,
    make_page_thumbnail,
    make_thumbnails,
    strong_etag,
    thumbnail_name,
)
from ocr_gateway.thumbnails.schemas import ImageBox
from ocr_gateway.uploads.dedup import DEDUP_FIELD, dedup_key, parse_dedup
from ocr_gateway.uploads.media import IMAGE_TYPES
from ocr_gateway.uploads.service import UploadService
from ocr_gateway.uploads.spool import SpooledUpload, TextFields, spool_upload

log = logging.getLogger(__name__)

ORIGINAL_NAME = "original"
# The dedup key's kind: the same bytes sent for thumbnails and for OCR are two things.
KIND_IMAGES = "images"
# Tries at inserting an upload whose identical live image vanished (FAILED) meanwhile.
DEDUP_TRIES = 3


@dataclass(frozen=True, slots=True)
class AcceptedImage:
    image: StoredImage
    deduplicated: bool


@dataclass(frozen=True, slots=True)
class ServedFile:
    stored: StoredFile
    etag: str


class ThumbnailService:
    """Owns the thumbnail tasks of this process and their leases."""

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
        self._work: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._pages: dict[str, asyncio.Task[None]] = {}

    async def prepare(self) -> None:
        """Nothing to make: the store holds the images (kept for the components' start-up)."""

    @staticmethod
    def original_key(image_id: uuid.UUID) -> str:
        return image_key(f"{image_id}/{ORIGINAL_NAME}")

    @staticmethod
    def thumbnail_key(image_id: uuid.UUID, box: str) -> str:
        return image_key(f"{image_id}/{thumbnail_name(box)}")

    @property
    def working_image_ids(self) -> list[uuid.UUID]:
        return list(self._work)

    # ------------------------------------------------------------ upload

    async def accept(
        self,
        body: AsyncIterator[bytes],
        content_type: str | None,
        content_length: str | None,
        caller: Caller,
        *,
        dedup: str | None = None,
    ) -> AcceptedImage:
        """Spool and inspect an image for `caller`'s tenant, record it PROCESSING and make its
        thumbnails in the background; or give back the tenant's live image of the same bytes.

        `dedup` is the query parameter, if sent; a `dedup` form field counts when it is not.
        A refused upload raises a GatewayError and leaves no file and no row behind.
        """
        image_id = uuid.uuid4()
        temp_path = self.storage.temp_path(image_id)
        texts = TextFields(frozenset({DEDUP_FIELD}))
        upload = await spool_upload(
            body,
            content_type,
            content_length,
            temp_path,
            max_bytes=self.settings.max_upload_bytes,
            accepted=IMAGE_TYPES,
            texts=texts,
        )
        try:
            wanted = parse_dedup(dedup if dedup is not None else texts.values.get(DEDUP_FIELD))
            key = dedup_key(KIND_IMAGES, {}, upload.sha256) if wanted else None
            if key is not None:
                existing = await self._live_image(caller.tenant, key)
                if existing is not None:
                    await self.storage.remove_file(temp_path)
                    return AcceptedImage(existing, deduplicated=True)
            await self._inspect(upload)
            await self.store.put_file(
                self.original_key(image_id),
                temp_path,
                content_type=upload.media_type.value,
                move=True,
            )
            accepted = await self._record(image_id, upload, caller.tenant, key)
        except BaseException:
            await self.storage.remove_file(temp_path)
            await self._forget_files(image_id)
            raise
        if accepted.deduplicated:
            await self._forget_files(image_id)
            return accepted
        log.info(
            "image accepted image_id=%s filename=%r media_type=%s bytes=%d",
            image_id,
            upload.filename,
            upload.media_type,
            upload.size,
        )
        self._schedule(image_id)
        return accepted

    async def _live_image(self, tenant: str, key: bytes) -> StoredImage | None:
        async with self.sessions() as session:
            return await repo.live_image_by_key(session, tenant, key)

    async def _record(
        self, image_id: uuid.UUID, upload: SpooledUpload, tenant: str, key: bytes | None
    ) -> AcceptedImage:
        """Insert the image; if an identical upload of the tenant won the race, that one."""
        for _ in range(DEDUP_TRIES):
            async with self.sessions.begin() as session:
                await tenants_repo.ensure_tenant(session, tenant)
                inserted = await repo.insert_image(
                    session,
                    image_id=image_id,
                    tenant=tenant,
                    filename=upload.filename,
                    media_type=upload.media_type.value,
                    size_bytes=upload.size,
                    sha256=upload.sha256,
                    dedup_key=key,
                    lease_s=self.settings.thumbnail_lease_s,
                )
                if inserted is not None:
                    image = await repo.get_image(session, image_id, tenant=None)
                    assert image is not None
                    return AcceptedImage(image, deduplicated=False)
            assert key is not None, "only a dedup key can conflict"
            existing = await self._live_image(tenant, key)
            if existing is not None:
                return AcceptedImage(existing, deduplicated=True)
        raise ServiceUnavailable("the image could not be recorded; try again", retry_after_s=1)

    async def _inspect(self, upload: SpooledUpload) -> None:
        """The inspection of `/ocrimage` (sniffed type, frame count, pixel budget, a decode),
        in the inspect pool; a refusal raises its GatewayError."""
        try:
            await self.uploads.inspect_batch([upload])
        except GatewayError as exc:
            exc.fields.pop("index", None)  # one file, not a batch: no index to name
            raise

    # ------------------------------------------------------------ making

    def _schedule(self, image_id: uuid.UUID) -> None:
        task = asyncio.create_task(self._make(image_id), name=f"thumbnails-{image_id}")
        self._work[image_id] = task
        task.add_done_callback(lambda _t: self._work.pop(image_id, None))

    async def _make(self, image_id: uuid.UUID) -> None:
        """Make the image's thumbnails in the render pool, retrying a lost worker; record DONE
        or FAILED. A pool shut down (this process stopping) or a store that cannot be reached
        leaves it PROCESSING for a later resume."""
        try:
            made, reason = await self._made(image_id)
        except PoolUnavailable:
            log.warning("thumbnails left for later, no render pool image_id=%s", image_id)
            return
        except StorageUnavailable as exc:
            log.warning("thumbnails left for later image_id=%s: %s", image_id, exc)
            async with self.sessions.begin() as session:
                await repo.release_leases(session, [image_id])
            return
        async with self.sessions.begin() as session:
            if made is not None and made.problem is None:
                thumbnails = {
                    thumb.box: {
                        "width": thumb.width,
                        "height": thumb.height,
                        "bytes": thumb.size_bytes,
                        "etag": thumb.etag,
                    }
                    for thumb in made.thumbnails
                }
                await repo.finish_image(
                    session, image_id, width=made.width, height=made.height, thumbnails=thumbnails
                )
                log.info(
                    "thumbnails made image_id=%s size=%dx%d", image_id, made.width, made.height
                )
                return
            reason = (made.problem or reason) if made is not None else reason
            await repo.fail_image(session, image_id, reason)
        await self._remove_thumbnails(image_id)
        log.error("thumbnails failed image_id=%s reason=%s", image_id, reason)

    async def _made(self, image_id: uuid.UUID) -> tuple[Made | None, str]:
        """The pool's work on a local copy of the original, into a scratch folder, and the
        thumbnails it wrote put in the store; (None, reason) when every worker was lost."""
        reason = ""
        async with (
            self.store.local_copy(self.original_key(image_id)) as original,
            self.storage.scratch() as folder,
        ):
            for attempt in range(1, self.settings.thumbnail_max_attempts + 1):
                try:
                    made: Made = await self.render_pool.run(
                        make_thumbnails,
                        str(original),
                        str(folder),
                        IMAGE_BOXES,
                        self.settings.thumbnail_quality,
                        self.settings.max_page_pixels,
                        timeout=self.settings.thumbnail_timeout_s,
                    )
                except WorkerLost as exc:
                    reason = f"making the thumbnails failed: {exc}"
                    log.warning(
                        "thumbnail worker lost image_id=%s attempt=%d: %s", image_id, attempt, exc
                    )
                    continue
                for thumb in made.thumbnails if made.problem is None else ():
                    await self.store.put_file(
                        self.thumbnail_key(image_id, thumb.box),
                        folder / thumbnail_name(thumb.box),
                        content_type=THUMBNAIL_MEDIA_TYPE,
                        move=True,
                    )
                return made, reason
        return None, reason

    async def _remove_thumbnails(self, image_id: uuid.UUID) -> None:
        for box in ImageBox:
            await self.store.delete(self.thumbnail_key(image_id, box.value))

    async def _forget_files(self, image_id: uuid.UUID) -> None:
        """Remove what an upload refused or answered by a duplicate stored; a store that
        cannot be reached now leaves it for nobody to serve (no row names it)."""
        with contextlib.suppress(StorageUnavailable):
            await self.store.delete_prefix(image_prefix(image_id))

    async def resume_unfinished(self) -> int:
        """Take up images whose process died: make their thumbnails again from the original,
        or fail them when the original is gone or they were tried too often."""
        async with self.sessions.begin() as session:
            claims = await repo.claim_unfinished(session, lease_s=self.settings.thumbnail_lease_s)
        for image_id, attempts in claims:
            if image_id in self._work:
                continue
            if attempts > self.settings.thumbnail_max_attempts + 1:
                reason = f"the thumbnails were not made after {attempts - 1} attempts"
            elif not await self.store.exists(self.original_key(image_id)):
                reason = "the original was lost before its thumbnails were made"
            else:
                log.info("thumbnails resumed image_id=%s attempt=%d", image_id, attempts)
                self._schedule(image_id)
                continue
            async with self.sessions.begin() as session:
                await repo.fail_image(session, image_id, reason)
            log.error("thumbnails abandoned image_id=%s reason=%s", image_id, reason)
        return len(claims)

    async def renew_leases(self) -> None:
        mine = self.working_image_ids
        if mine:
            async with self.sessions.begin() as session:
                await repo.renew_leases(session, mine, lease_s=self.settings.thumbnail_lease_s)

    async def close(self) -> None:
        """Stop and hand this process's images back, so that a restart takes them up at once."""
        mine = self.working_image_ids
        tasks = list(self._work.values()) + list(self._pages.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        if mine:
            with contextlib.suppress(Exception):
                async with self.sessions.begin() as session:
                    await repo.release_leases(session, mine)

    # ------------------------------------------------------------ reading

    async def get(self, image_id: uuid.UUID, *, scope: str | None) -> StoredImage:
        """The image: 404 if it does not exist in `scope`."""
        async with self.sessions() as session:
            image = await repo.get_image(session, image_id, tenant=scope)
        if image is None:
            raise NotFound(f"image {image_id} does not exist")
        return image

    async def original(self, image_id: uuid.UUID, *, scope: str | None) -> ServedFile:
        image = await self.get(image_id, scope=scope)
        etag = '"' + image.sha256.hex()[:32] + '"'
        stored = StoredFile(self.original_key(image_id), image.size_bytes, image.media_type)
        return ServedFile(stored, etag)

    async def thumbnail(
        self, image_id: uuid.UUID, box: ImageBox, *, scope: str | None
    ) -> ServedFile:
        """A thumbnail of a DONE image; 409 while PROCESSING and when FAILED."""
        image = await self.get(image_id, scope=scope)
        if image.status != ImageStatus.DONE or not image.thumbnails:
            raise Conflict(
                f"image {image_id} is {image.status}; its thumbnails are served once it is DONE"
            ).add_fields(status=image.status)
        entry = image.thumbnails[box.value]
        key = self.thumbnail_key(image_id, box.value)
        stored = StoredFile(key, int(entry["bytes"]), THUMBNAIL_MEDIA_TYPE)
        return ServedFile(stored, str(entry["etag"]))

    async def delete(self, image_id: uuid.UUID, *, scope: str | None) -> None:
        """Remove the image's row and files; its dedup key goes with the row."""
        async with self.sessions.begin() as session:
            if not await repo.delete_image(session, image_id, tenant=scope):
                raise NotFound(f"image {image_id} does not exist")
        task = self._work.get(image_id)
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        await self.store.delete_prefix(image_prefix(image_id))
        log.info("image deleted image_id=%s", image_id)

    # ------------------------------------------------------------ job pages

    async def page_thumbnail(
        self, job_id: uuid.UUID, page_number: int, size: int, *, scope: str | None
    ) -> tuple[bytes, str]:
        """A job page's thumbnail (WebP bytes, strong ETag), made at its first request in the
        render pool and kept with the job's artefacts. 404 for an unknown job or a page not
        rendered yet."""
        async with self.sessions() as session:
            if await jobs_repo.get_job(session, job_id, tenant=scope) is None:
                raise NotFound(f"job {job_id} does not exist")
            page = await jobs_repo.get_page(session, job_id, page_number)
        source = page_key(job_id, page_number)
        if page is None or not await self.store.exists(source):
            raise NotFound(f"page {page_number} of job {job_id} does not exist")
        target = page_thumbnail_key(job_id, page_number, size)
        try:
            data = await self.store.get_bytes(target)
        except ArtefactMissing:
            await self._page_made(source, target, size)
            try:
                data = await self.store.get_bytes(target)
            except ArtefactMissing:  # the job was deleted meanwhile
                raise NotFound(f"page {page_number} of job {job_id} does not exist") from None
        return data, strong_etag(data)

    async def _page_made(self, source: str, target: str, size: int) -> None:
        """Make `target` once, however many requests ask for it at the same moment."""
        task = self._pages.get(target)
        if task is None:
            task = asyncio.create_task(self._make_page(source, target, size))
            self._pages[target] = task
            task.add_done_callback(lambda _t: self._pages.pop(target, None))
        await asyncio.shield(task)

    async def _make_page(self, source: str, target: str, size: int) -> None:
        try:
            async with self.store.local_copy(source) as png, self.storage.scratch() as folder:
                written = folder / "thumbnail.webp"
                made = await self.render_pool.run(
                    make_page_thumbnail,
                    str(png),
                    str(written),
                    size,
                    self.settings.thumbnail_quality,
                    timeout=self.settings.thumbnail_timeout_s,
                )
                if made.problem is None:
                    await self.store.put_file(
                        target, written, content_type=THUMBNAIL_MEDIA_TYPE, move=True
                    )
        except ArtefactMissing:
            raise NotFound("the page was deleted") from None
        except WorkerLost as exc:
            raise ServiceUnavailable(f"the thumbnail cannot be made right now ({exc})") from exc
        if made.problem is not None:
            raise GatewayError(made.problem)
