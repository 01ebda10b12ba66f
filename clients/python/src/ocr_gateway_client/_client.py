"""`AsyncGatewayClient`: submit documents, follow their jobs, fetch their results."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeAlias
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
    Deleted,
    Event,
    Job,
    JobList,
    Page,
    ResultFormat,
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

# A file to submit: a path, its bytes, a binary file object, or a (filename, bytes or file) pair.
FileInput: TypeAlias = str | os.PathLike[str] | bytes | IO[bytes] | tuple[str, bytes | IO[bytes]]
# A job: the `Job` itself or its id.
JobRef: TypeAlias = Job | uuid.UUID | str

_JOBS = TypeAdapter(list[Job])


def _api_root(base_url: str) -> str:
    root = base_url.rstrip("/")
    return root if root.endswith(API_PREFIX) else root + API_PREFIX


def _job_path(job: JobRef, *rest: str | int) -> str:
    job_id = job.job_id if isinstance(job, Job) else job
    return "/".join(["/jobs", quote(str(job_id), safe=""), *(str(part) for part in rest)])


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

    async def submit(self, *files: FileInput, **options: Any) -> list[Job]:
        """Upload one or more files as one batch: each becomes a job, returned in the order
        given. The batch is all or nothing: a refused file raises, naming its `index`, and no
        job is kept (the error's `index` names the file). `options` are sent as form fields
        beside the files; the gateway ignores fields it does not know."""
        if not files:
            raise ValueError("submit() needs at least one file")
        async with contextlib.AsyncExitStack() as stack:
            parts = [await _file_part(index, item, stack) for index, item in enumerate(files)]
            data = {name: str(value) for name, value in options.items()}
            response = await self._request("POST", "/jobs", files=parts, data=data)
        return _JOBS.validate_python(response.json()["jobs"])

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
        target = Path(path)
        if await asyncio.to_thread(target.is_dir):
            job_id = job.job_id if isinstance(job, Job) else job
            target = target / f"{job_id}.{format}"
        part = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
        async with self._http.stream(
            "GET", _job_path(job, "result"), params=_result_params(format, partial)
        ) as response:
            if response.is_error:
                await response.aread()
                raise error_from_response(response)
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

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        response = await self._http.request(method, url, **kwargs)
        if response.is_error:
            raise error_from_response(response)
        return response


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
