"""`AsyncGatewayClient`: submit documents, follow their jobs, fetch their results."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from email.message import Message
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeAlias, overload
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter

from ocr_gateway_client._sse import parse_events
from ocr_gateway_client.errors import (
    EventStreamLost,
    ServerError,
    ServiceUnavailable,
    WaitTimeout,
    error_from_response,
)
from ocr_gateway_client.models import (
    FINISHED_STATUSES,
    Cancelled,
    ConvertAccepted,
    Deleted,
    Download,
    Event,
    ImageDeleted,
    ImageStatus,
    Job,
    JobList,
    Page,
    ResultFormat,
    TextLayer,
    ThumbnailSize,
)

API_PREFIX = "/api/v1"
# The gateway's longest long poll (`GET /jobs/{id}?wait=`), and its SSE heartbeat period.
MAX_WAIT_S = 60.0
HEARTBEAT_S = 15.0
# Between two tries to reopen an event stream: the first delay, doubled on each failure up to
# the cap. A server's `retry:` field replaces the first delay.
RECONNECT_DELAY_S = 0.5
RECONNECT_DELAY_CAP_S = 10.0
CHUNK_BYTES = 1 << 16
# Polling an image until its thumbnails are written (`/images` has no long poll): the first
# delay, grown by IMAGE_POLL_GROWTH on each poll up to the cap.
IMAGE_POLL_S = 0.05
IMAGE_POLL_GROWTH = 1.5
IMAGE_POLL_CAP_S = 1.0

# A file to submit: a path, its bytes, a binary file object, or a (filename, bytes or file) pair.
FileInput: TypeAlias = str | os.PathLike[str] | bytes | IO[bytes] | tuple[str, bytes | IO[bytes]]
# A job: the `Job` itself, the `ConvertAccepted` of a `/convert/batch` batch, or its id.
JobRef: TypeAlias = Job | ConvertAccepted | uuid.UUID | str
# A download: the `Download` a finished job lists, or its `file_id`.
DownloadRef: TypeAlias = Download | uuid.UUID | str
# An `/images` upload: its `ImageStatus`, or its id.
ImageRef: TypeAlias = ImageStatus | uuid.UUID | str

_JOBS = TypeAdapter(list[Job])


def _api_root(base_url: str) -> str:
    root = base_url.rstrip("/")
    return root if root.endswith(API_PREFIX) else root + API_PREFIX


def _job_id(job: JobRef) -> uuid.UUID | str:
    return job.job_id if isinstance(job, (Job, ConvertAccepted)) else job


def _job_path(job: JobRef, *rest: str | int) -> str:
    job_id = _job_id(job)
    return "/".join(["/jobs", quote(str(job_id), safe=""), *(str(part) for part in rest)])


def _image_path(image: ImageRef, *rest: str) -> str:
    image_id = image.id if isinstance(image, ImageStatus) else image
    return "/".join(["/images", quote(str(image_id), safe=""), *rest])


def _file_id(file: DownloadRef) -> str:
    return str(file.file_id if isinstance(file, Download) else file)


def _upload_options(text_layer: TextLayer | None, dedup: bool | None) -> dict[str, str]:
    """The upload options given, as the gateway reads them (`dedup` as `true`/`false`)."""
    options: dict[str, str] = {}
    if text_layer is not None:
        options["text_layer"] = text_layer
    if dedup is not None:
        options["dedup"] = "true" if dedup else "false"
    return options


def _form_value(value: Any) -> str:
    """A form field's text: booleans as the gateway spells them, anything else as `str()`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class AsyncGatewayClient:
    """An async client for one gateway. Use it as an async context manager, or call `aclose()`.

    `base_url` is the gateway's address (`http://host:8000`; `/api/v1` is added when missing).
    `api_key`, when given, is sent as `Authorization: Bearer <key>`: with a client key, the key
    decides the tenant. `tenant`, when given, is sent as `X-Tenant-Id`: the tenant to act for on
    a gateway without keys, or the one tenant to see with the operator's key. `transport` is
    handed to httpx (a proxy, retries, or an in-process app for tests).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        tenant: str | None = None,
        timeout: float = 30.0,
        max_reconnects: int = 10,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        from ocr_gateway_client import __version__

        headers = {"User-Agent": f"ocr-gateway-client/{__version__}"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        if tenant:
            headers["X-Tenant-Id"] = tenant
        self._timeout = httpx.Timeout(timeout)
        self._max_reconnects = max_reconnects
        self._http = httpx.AsyncClient(
            base_url=_api_root(base_url),
            headers=headers,
            timeout=self._timeout,
            transport=transport,
        )

    async def __aenter__(self) -> AsyncGatewayClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # Submitting and reading jobs

    async def submit(
        self,
        *files: FileInput,
        text_layer: TextLayer | None = None,
        dedup: bool | None = None,
        **options: Any,
    ) -> list[Job]:
        """Upload one or more files as one batch: each becomes a job, returned in the order
        given. The batch is all or nothing: a refused file raises, naming its `index`, and no
        job is kept (the error's `index` names the file).

        `text_layer="auto"` reads a born-digital PDF page from its own text instead of OCR
        (`"off"`: every page to OCR; None: the gateway's default). A file the tenant sent
        before with the same options answers that job, with `deduplicated` True, unless
        `dedup=False`. Other `options` are sent as form fields beside the files; the gateway
        ignores fields it does not know."""
        if not files:
            raise ValueError("submit() needs at least one file")
        data = {name: _form_value(value) for name, value in options.items()}
        data.update(_upload_options(text_layer, dedup))
        async with contextlib.AsyncExitStack() as stack:
            parts = [await _file_part(index, item, stack) for index, item in enumerate(files)]
            response = await self._request("POST", "/jobs", files=parts, data=data)
        return _JOBS.validate_python(response.json()["jobs"])

    async def convert_tables(
        self,
        *files: FileInput,
        text_layer: TextLayer | None = None,
        dedup: bool | None = None,
    ) -> ConvertAccepted:
        """Send table screenshots, scans and PDFs as one `/convert/batch` job: its pages are
        every page of every file, in order, searched for tables. Once the job is done (see
        `wait()`), its `downloads` hold the XLSX workbook for `download_file()`.

        `text_layer` defaults to `auto` on the gateway here (a born-digital page's tables are
        read from its text, no OCR). The same files with the same options sent again answer
        that job with `deduplicated` True, unless `dedup=False`. All or nothing: a refused
        file raises, naming its `index`."""
        if not files:
            raise ValueError("convert_tables() needs at least one file")
        data = _upload_options(text_layer, dedup)
        async with contextlib.AsyncExitStack() as stack:
            parts = [await _file_part(index, item, stack) for index, item in enumerate(files)]
            response = await self._request("POST", "/convert/batch", files=parts, data=data)
        return ConvertAccepted.model_validate_json(response.content)

    async def get(self, job: JobRef, *, wait: float = 0) -> Job:
        """The job with its counters and pages' statuses. With `wait` (at most 60 s), the
        gateway answers when something happens to the job, or when `wait` has passed."""
        params = {"wait": f"{wait:g}"} if wait else None
        read = self._timeout.read
        response = await self._request(
            "GET",
            _job_path(job),
            params=params,
            timeout=self._reading(None if read is None else read + wait),
        )
        return Job.model_validate_json(response.content)

    async def wait(self, job: JobRef, timeout: float | None = None) -> Job:
        """Wait until the job is completed, failed or cancelled, and return it. Long-polls the
        gateway (no busy polling). Raises `WaitTimeout`, holding the last state seen, when
        `timeout` seconds pass first; `None` waits as long as it takes."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = MAX_WAIT_S if deadline is None else deadline - time.monotonic()
            current = await self.get(job, wait=max(0.0, min(MAX_WAIT_S, left)))
            if current.finished:
                return current
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(current, timeout or 0.0)

    async def jobs(
        self, *, status: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> JobList:
        """Jobs, newest first; pass `next_cursor` back as `cursor` for the next page."""
        params: dict[str, str | int] = {"limit": limit}
        if status is not None:
            params["status"] = status
        if cursor is not None:
            params["cursor"] = cursor
        response = await self._request("GET", "/jobs", params=params)
        return JobList.model_validate_json(response.content)

    async def page(self, job: JobRef, page_number: int) -> Page:
        """One page: its status, text, line boxes and error."""
        response = await self._request("GET", _job_path(job, "pages", page_number))
        return Page.model_validate_json(response.content)

    # Following a job

    async def events(
        self, job: JobRef, *, last_event_id: int | None = None
    ) -> AsyncIterator[Event]:
        """The job's progress events, ending after its terminal event (`job.completed`,
        `job.failed`, `job.cancelled` or `job.deleted`), or after the first `job.snapshot`
        when the job had already finished.

        A dropped connection is reopened with `Last-Event-ID`, so no event is missed or repeated;
        each reconnect yields a fresh `job.snapshot` (its `id` is None) before the events that
        followed. `last_event_id` resumes from an earlier stream. After `max_reconnects` failed
        tries in a row, raises `EventStreamLost`. Close the iterator early with
        `contextlib.aclosing` to release its connection at once."""
        failures = 0
        delay = RECONNECT_DELAY_S
        while True:
            headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
            if last_event_id is not None:
                headers["Last-Event-ID"] = str(last_event_id)
            ended_finished = False
            failure: BaseException | None = None
            try:
                async with self._http.stream(
                    "GET",
                    _job_path(job, "events"),
                    headers=headers,
                    timeout=self._reading(3 * HEARTBEAT_S),
                ) as response:
                    if response.is_error:
                        await response.aread()
                        raise error_from_response(response)
                    failures = 0
                    async for sse in parse_events(response.aiter_lines()):
                        if sse.retry is not None:
                            delay = sse.retry / 1000
                        event = Event.model_validate_json(sse.data)
                        if event.id is not None:
                            last_event_id = event.id
                        yield event
                        if event.terminal:
                            return
                        ended_finished = event.id is None and event.status in FINISHED_STATUSES
                if ended_finished:
                    return  # a finished job's stream is its snapshot alone
            except (httpx.TransportError, ServerError, ServiceUnavailable) as exc:
                failure = exc
            if failure is not None:
                failures += 1
                if failures > self._max_reconnects:
                    raise EventStreamLost(
                        f"the event stream of job {job} could not be reopened "
                        f"after {self._max_reconnects} tries: {failure}"
                    ) from failure
            await asyncio.sleep(min(RECONNECT_DELAY_CAP_S, delay * 2 ** max(0, failures - 1)))

    # Results

    async def result(
        self, job: JobRef, format: ResultFormat = "txt", *, partial: bool = False
    ) -> bytes:
        """The job's result in `format`: `txt` (pages separated by form feeds), `json`, `zip`
        or `pdf` (searchable). Raises `JobConflict` while the job is not finished, unless
        `partial`."""
        response = await self._request(
            "GET", _job_path(job, "result"), params=_result_params(format, partial)
        )
        return response.content

    async def download(
        self,
        job: JobRef,
        format: ResultFormat,
        path: str | os.PathLike[str],
        *,
        partial: bool = False,
    ) -> Path:
        """Stream the result to `path` (or into `<path>/<job_id>.<format>` when `path` is a
        folder) without holding it in memory; returns the file's path. The file appears whole
        or not at all: it is written beside its place and renamed at the end."""
        job_id = _job_id(job)
        return await self._stream_to(
            _job_path(job, "result"),
            Path(path),
            lambda _: f"{job_id}.{format}",
            params=_result_params(format, partial),
        )

    @overload
    async def download_file(self, file: DownloadRef, dest: None = None) -> bytes: ...

    @overload
    async def download_file(self, file: DownloadRef, dest: str | os.PathLike[str]) -> Path: ...

    async def download_file(
        self, file: DownloadRef, dest: str | os.PathLike[str] | None = None
    ) -> bytes | Path:
        """A file made from a job (a `Download` from `Job.downloads`, or its `file_id`): the
        XLSX workbook of a `/convert/batch` job's tables. Without `dest`, returns its bytes;
        with `dest`, streams it there (into `<dest>/<the gateway's filename>` when `dest` is a
        folder), whole or not at all, and returns the file's path. Raises `JobConflict` while
        its job is not done, `JobNotFound` for an unknown file or another tenant's."""
        url = f"/download/{quote(_file_id(file), safe='')}"
        if dest is None:
            return (await self._request("GET", url)).content
        return await self._stream_to(
            url, Path(dest), lambda response: _attachment_name(response, _file_id(file))
        )

    # Thumbnails (`/images`)

    async def upload_image(self, file: FileInput, *, dedup: bool | None = None) -> ImageStatus:
        """Upload an image (PNG, JPEG, TIFF, BMP or WebP) to get its 100x100, 300x300 and
        1200x1200 thumbnails, made at once with no OCR. Returns `PROCESSING` with the image's
        `id`; `image(id, wait=...)` says when it is DONE. The same bytes the tenant sent before
        answer that image with `deduplicated` True, unless `dedup=False`."""
        params = {"dedup": "true" if dedup else "false"} if dedup is not None else None
        async with contextlib.AsyncExitStack() as stack:
            _, part = await _file_part(0, file, stack)
            response = await self._request("POST", "/images", files={"file": part}, params=params)
        return ImageStatus.model_validate_json(response.content)

    async def image(self, image: ImageRef, *, wait: float = 0) -> ImageStatus:
        """The image's status (`PROCESSING`, `DONE`, or `FAILED` with `error`), its original's
        URL and, once DONE, its thumbnails' URLs by box. With `wait`, polls (with a short,
        growing delay: `/images` has no long poll) until the image is DONE or FAILED, or until
        `wait` seconds have passed, and returns the last state seen."""
        deadline = time.monotonic() + wait
        delay = IMAGE_POLL_S
        while True:
            response = await self._request("GET", _image_path(image))
            current = ImageStatus.model_validate_json(response.content)
            left = deadline - time.monotonic()
            if current.finished or left <= 0:
                return current
            await asyncio.sleep(min(delay, left))
            delay = min(IMAGE_POLL_CAP_S, delay * IMAGE_POLL_GROWTH)

    async def image_thumbnail(self, image: ImageRef, size: ThumbnailSize = "300x300") -> bytes:
        """The image's thumbnail in the box `size` (WebP, aspect kept, never enlarged). Raises
        `JobConflict` while the image is PROCESSING, and when it FAILED."""
        response = await self._request("GET", _image_path(image, "thumbnails", size))
        return response.content

    async def image_original(self, image: ImageRef) -> bytes:
        """The image as it was uploaded."""
        return (await self._request("GET", _image_path(image, "original"))).content

    async def delete_image(self, image: ImageRef) -> ImageDeleted:
        """Delete the image, its original and its thumbnails."""
        response = await self._request("DELETE", _image_path(image))
        return ImageDeleted.model_validate_json(response.content)

    # Ending jobs

    async def cancel(self, job: JobRef) -> Cancelled:
        """Cancel the job: pages not done are never sent to OCR. Cancelling again, or a finished
        job, changes nothing."""
        response = await self._request("POST", _job_path(job, "cancel"))
        return Cancelled.model_validate_json(response.content)

    async def delete(self, job: JobRef) -> Deleted:
        """Delete the job, its pages and its files."""
        response = await self._request("DELETE", _job_path(job))
        return Deleted.model_validate_json(response.content)

    def _reading(self, read: float | None) -> httpx.Timeout:
        """The client's timeouts with another read timeout."""
        base = self._timeout
        return httpx.Timeout(connect=base.connect, read=read, write=base.write, pool=base.pool)

    async def _stream_to(
        self,
        url: str,
        path: Path,
        name_in_folder: Callable[[httpx.Response], str],
        **kwargs: Any,
    ) -> Path:
        """Stream a GET's body to `path` (or `path / name_in_folder(response)` when `path` is
        a folder) without holding it in memory; the file is written beside its place and
        renamed at the end, so it appears whole or not at all."""
        is_dir = await asyncio.to_thread(path.is_dir)
        async with self._http.stream("GET", url, **kwargs) as response:
            if response.is_error:
                await response.aread()
                raise error_from_response(response)
            target = path / name_in_folder(response) if is_dir else path
            part = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
            handle = await asyncio.to_thread(part.open, "wb")
            try:
                async for chunk in response.aiter_bytes(CHUNK_BYTES):
                    await asyncio.to_thread(handle.write, chunk)
            except BaseException:
                handle.close()
                part.unlink(missing_ok=True)
                raise
            handle.close()
        await asyncio.to_thread(os.replace, part, target)
        return target

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        response = await self._http.request(method, url, **kwargs)
        if response.is_error:
            raise error_from_response(response)
        return response


def _attachment_name(response: httpx.Response, file_id: str) -> str:
    """The file name the gateway gives in `Content-Disposition` (its last path part only),
    else `<file_id>.xlsx`."""
    header = response.headers.get("content-disposition")
    if header:
        message = Message()
        message["content-disposition"] = header
        name = message.get_filename()
        if name:
            safe = Path(name.replace("\\", "/")).name
            if safe not in ("", ".", ".."):
                return safe
    return f"{file_id}.xlsx"


def _result_params(format: ResultFormat, partial: bool) -> Mapping[str, str]:
    return {"format": format, "partial": "true"} if partial else {"format": format}


async def _file_part(
    index: int, item: FileInput, stack: contextlib.AsyncExitStack
) -> tuple[str, tuple[str, bytes | IO[bytes], str]]:
    """One `files` field of the multipart body; an opened path is closed by `stack`."""
    content: bytes | IO[bytes]
    if isinstance(item, tuple):
        name, content = item
    elif isinstance(item, bytes):
        name, content = f"file-{index}", item
    elif isinstance(item, (str, os.PathLike)):
        path = Path(item)
        handle = await asyncio.to_thread(path.open, "rb")
        stack.callback(handle.close)
        name, content = path.name, handle
    else:
        name, content = Path(getattr(item, "name", "") or f"file-{index}").name, item
    return "files", (name, content, "application/octet-stream")
