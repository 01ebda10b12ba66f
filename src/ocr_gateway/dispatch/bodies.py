"""Page bodies: each claimed page's message, built from the artefact store, a batch at a time.

`MESSAGE_IMAGES=inline` puts the page's PNG, read through the store, in the body as base64.
`url` puts a URL the worker GETs instead: presigned by S3, or on local disk the gateway's own
signed URL (`dispatch/page_urls.py`). Either way a page whose image is missing is found here
and failed (`Unreadable`), and one that cannot be read now goes back to pending.

On local disk a batch is read (or, by URL, looked up) and encoded on one reader thread per
dispatcher, from the files the store names (`file_path`): a thread hop per page cost more CPU
than the read itself (0.44 against 0.13 ms a page, measured), and one thread keeps the page
buffers in one malloc arena instead of one per pool thread. On S3 the batch's GETs (or HEADs)
run concurrently, and the bodies fetched are encoded on that same thread.
"""

from __future__ import annotations

import asyncio
import gc
import os
import stat
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ocr_gateway.core.settings import Settings
from ocr_gateway.dispatch.page_urls import PageUrlSigner, expiry
from ocr_gateway.dispatch.repository import ClaimedPage
from ocr_gateway.messaging.contracts import encode_page_message, page_message_id
from ocr_gateway.storage import ArtefactMissing, ArtefactStore
from ocr_gateway.storage.keys import page_key

PREPARE_BATCH = 16
PREPARE_AHEAD = 2


@dataclass(slots=True)
class Outgoing:
    page_id: int
    message_id: str
    body: bytes
    # The AMQP priority to publish with (a task's pages: > 0).
    priority: int = 0


@dataclass(slots=True)
class Unreadable:
    """A claimed page whose image could not be had; `error` says why."""

    page: ClaimedPage
    error: Exception

    @property
    def missing(self) -> bool:
        """The image is not in the store (the page fails); otherwise it may be later."""
        return isinstance(self.error, ArtefactMissing)


Prepared = Outgoing | Unreadable


def read_file(path: str | os.PathLike[str]) -> bytes:
    with open(path, "rb", buffering=0) as handle:
        return handle.readall()


def _outgoing(
    page: ClaimedPage, png: bytes | None = None, *, image_url: str | None = None
) -> Outgoing:
    """The page's message, its image inline (`png`) or by `image_url`."""
    body = encode_page_message(
        page.job_id,
        page.page_number,
        png,
        image_url=image_url,
        tables=page.tables,
        task=page.task,
        boxes=page.boxes,
    )
    return Outgoing(page.id, page_message_id(page.job_id, page.page_number), body, page.priority)


def _missing(page: ClaimedPage) -> ArtefactMissing:
    return ArtefactMissing(f"no page image {page_key(page.job_id, page.page_number)}")


class PageBodies:
    """Builds the bodies of claimed pages as `MESSAGE_IMAGES` says, from `store`."""

    def __init__(self, settings: Settings, store: ArtefactStore) -> None:
        self.store = store
        self.by_url = settings.message_images == "url"
        self.ttl_s = settings.message_image_url_ttl_s
        # Whether the store's objects are files: probed once, with a key of no page.
        self.on_disk = store.file_path(page_key(uuid.UUID(int=0), 1)) is not None
        self.signer = PageUrlSigner.from_settings(settings)
        if self.by_url and self.on_disk and self.signer is None:
            raise ValueError("MESSAGE_IMAGES=url on local disk needs MESSAGE_IMAGE_URL_SECRET")
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="page-reader")

    def close(self) -> None:
        """Let the reader thread go; nothing is prepared after this."""
        self._reader.shutdown(wait=False, cancel_futures=True)

    async def prepare(self, pages: Sequence[ClaimedPage]) -> list[Prepared]:
        """The batch's bodies, or why a page has none, in the batch's order."""
        loop = asyncio.get_running_loop()
        if self.on_disk:
            work = self._urls_from_files if self.by_url else self._bodies_from_files
            return await loop.run_in_executor(self._reader, work, pages)
        if self.by_url:
            return await self._urls_from_store(pages)
        fetched = await asyncio.gather(
            *(self.store.get_bytes(page_key(p.job_id, p.page_number)) for p in pages),
            return_exceptions=True,
        )
        return await loop.run_in_executor(self._reader, _encode_fetched, pages, fetched)

    # ------------------------------------------------------------ local disk, reader thread

    def _path(self, page: ClaimedPage) -> str:
        path = self.store.file_path(page_key(page.job_id, page.page_number))
        assert path is not None, "a store whose objects are files"
        return str(path)

    def _bodies_from_files(self, pages: Sequence[ClaimedPage]) -> list[Prepared]:
        prepared: list[Prepared] = []
        for page in pages:
            try:
                png = read_file(self._path(page))
            except FileNotFoundError:
                prepared.append(Unreadable(page, _missing(page)))
                continue
            except OSError as exc:
                prepared.append(Unreadable(page, exc))
                continue
            prepared.append(_outgoing(page, png))
        return prepared

    def _urls_from_files(self, pages: Sequence[ClaimedPage]) -> list[Prepared]:
        assert self.signer is not None
        expires = expiry(self.ttl_s)
        prepared: list[Prepared] = []
        for page in pages:
            try:
                if not stat.S_ISREG(os.stat(self._path(page)).st_mode):
                    raise FileNotFoundError(page.page_number)
            except FileNotFoundError:
                prepared.append(Unreadable(page, _missing(page)))
                continue
            except OSError as exc:
                prepared.append(Unreadable(page, exc))
                continue
            url = self.signer.url(page.job_id, page.page_number, expires=expires)
            prepared.append(_outgoing(page, image_url=url))
        return prepared

    # ------------------------------------------------------------ S3

    async def _urls_from_store(self, pages: Sequence[ClaimedPage]) -> list[Prepared]:
        """Each page's presigned URL, once a HEAD found its image (concurrently)."""
        return list(await asyncio.gather(*(self._url_from_store(page) for page in pages)))

    async def _url_from_store(self, page: ClaimedPage) -> Prepared:
        key = page_key(page.job_id, page.page_number)
        try:
            if await self.store.size(key) is None:
                return Unreadable(page, _missing(page))
            url = await self.store.presigned_url(key, self.ttl_s)
        except Exception as exc:
            return Unreadable(page, exc)
        if url is None:
            return Unreadable(page, RuntimeError(f"the {self.store.backend} store signs no URL"))
        return _outgoing(page, image_url=url)


def _encode_fetched(
    pages: Sequence[ClaimedPage], fetched: Sequence[bytes | BaseException]
) -> list[Prepared]:
    """Encode the bodies fetched from the store (on the reader thread)."""
    prepared: list[Prepared] = []
    for page, png in zip(pages, fetched, strict=True):
        if isinstance(png, Exception):
            prepared.append(Unreadable(page, png))
        elif isinstance(png, BaseException):
            raise png
        else:
            prepared.append(_outgoing(page, png))
    return prepared


def release_bodies(queue: asyncio.Queue[Outgoing | None]) -> None:
    """Free the page bodies a stopped session leaves behind.

    A cancelled session's frames sit in reference cycles with their exceptions (TaskGroup,
    tracebacks), which only the cyclic collector frees, and it seldom runs in a process that
    allocates few objects and many large buffers: each stop kept ~10 MB of bodies alive, and
    20 stop/start pairs grew the dispatcher by 180 MB. Empty the queue, then collect (cheap:
    the process froze its start-up objects out of collections).
    """
    while not queue.empty():
        queue.get_nowait()
    gc.collect()
