"""The client's job API: list, read, follow (SSE, websocket, long poll), cancel and delete.

Each route acts for its caller's tenant (`CallerDep`) and passes `scope=caller.scope` to the
service, whose queries do not find another tenant's job: it answers 404 as an unknown job does.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, WebSocket, status
from fastapi.websockets import WebSocketDisconnect
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.responses import Response

from ocr_gateway.api.deps import CallerDep, EventsDep, JobsDep, ThumbnailsDep, websocket_caller
from ocr_gateway.api.images import BINARY, cached_bytes
from ocr_gateway.api.openapi import CALLER_ERRORS, JobId, PageNumber, errors
from ocr_gateway.api.schemas import Deleted
from ocr_gateway.components import Components
from ocr_gateway.convert.schemas import DownloadLink
from ocr_gateway.core.errors import GatewayError
from ocr_gateway.db.models import Job, JobStatus, Page, PageStatus
from ocr_gateway.events.hub import HEARTBEAT_S, EventHub
from ocr_gateway.events.types import EventType, JobEventOut
from ocr_gateway.jobs.schemas import (
    Cancelled,
    ClientJob,
    ClientJobList,
    ClientJobSummary,
    ClientPage,
    PageState,
    text_boxes,
)
from ocr_gateway.jobs.service import JobService
from ocr_gateway.thumbnails.making import THUMBNAIL_MEDIA_TYPE
from ocr_gateway.thumbnails.schemas import PageThumbnailSize

router = APIRouter(prefix="/jobs", tags=["jobs"], responses=errors(*CALLER_ERRORS))

MAX_WAIT_S = 60
# The websocket close code for "policy violation": a job that does not exist (or is another
# tenant's), and a caller refused (no valid key, another tenant named).
WS_UNKNOWN_JOB = 1008


def client_job(
    job: Job, pages: list[Page], downloads: list[DownloadLink] | None = None
) -> ClientJob:
    cancelled = sum(1 for page in pages if page.status == PageStatus.CANCELLED)
    return ClientJob(
        job_id=job.job_id,
        tenant=job.tenant,
        filename=job.filename,
        media_type=job.media_type,
        status=job.status,
        total_page_number=job.total_page_number,
        rendered_pages=job.rendered_pages,
        completed_pages=job.completed_pages,
        failed_pages=job.failed_pages,
        cancelled_pages=cancelled,
        error=job.error,
        created_at=job.created_at,
        updated_at=job.updated_at,
        pages=[
            PageState(page_number=page.page_number, status=page.status, source=page.source)
            for page in pages
        ],
        downloads=downloads or [],
    )


async def _snapshot(jobs: JobService, job_id: uuid.UUID, *, scope: str | None) -> ClientJob:
    job, pages = await jobs.get(job_id, scope=scope)
    return client_job(job, list(pages), await jobs.downloads(job))


def _snapshot_event(job: ClientJob) -> JobEventOut:
    return JobEventOut(
        id=None,
        type=EventType.SNAPSHOT,
        job_id=job.job_id,
        status=job.status,
        total_page_number=job.total_page_number,
        completed_pages=job.completed_pages,
        failed_pages=job.failed_pages,
        cancelled_pages=job.cancelled_pages,
        created_at=job.updated_at,
    )


async def _follow(
    jobs: JobService,
    events: EventHub,
    job_id: uuid.UUID,
    last_event_id: int | None,
    *,
    scope: str | None,
) -> tuple[JobEventOut, AsyncIterator[JobEventOut | None] | None]:
    """A fresh snapshot, then the events after `last_event_id` (a reconnect), or after the
    last one recorded now (a new reader: the snapshot stands for the past). The position is
    read before the snapshot, so an event recorded meanwhile is sent, never lost. None for the
    events when a new reader finds the job finished. The snapshot is NotFound for a job out of
    `scope`, so no event of it is ever read."""
    cursor = last_event_id if last_event_id is not None else await events.last_id(job_id)
    snapshot = await _snapshot(jobs, job_id, scope=scope)
    if last_event_id is None and JobStatus(snapshot.status).finished:
        return _snapshot_event(snapshot), None
    return _snapshot_event(snapshot), events.follow(job_id, cursor)


@router.get(
    "",
    operation_id="list_jobs",
    response_model=ClientJobList,
    responses=errors(400, 422),
)
async def list_jobs(
    jobs: JobsDep,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[
        str | None, Query(max_length=200, description="next_cursor of the previous page")
    ] = None,
    status: Annotated[JobStatus | None, Query(description="only jobs in this status")] = None,
) -> ClientJobList:
    """The caller's jobs (the operator's key: every tenant's), newest first."""
    page = await jobs.list_all(limit=limit, cursor=cursor, status=status, scope=caller.scope)
    return ClientJobList(
        jobs=[ClientJobSummary.model_validate(job, from_attributes=True) for job in page.items],
        next_cursor=page.next_cursor,
    )


@router.get(
    "/{job_id}",
    operation_id="get_job",
    response_model=ClientJob,
    responses=errors(404, 422),
)
async def get_job(
    jobs: JobsDep,
    events: EventsDep,
    caller: CallerDep,
    job_id: JobId,
    wait: Annotated[
        float,
        Query(ge=0, le=MAX_WAIT_S, description="seconds to wait for a change (long poll)"),
    ] = 0,
) -> ClientJob:
    """The job, its counters and its pages' statuses. With `wait`, answers when something
    happens to the job, when it is finished, or after `wait` seconds, whichever is first."""
    cursor = await events.last_id(job_id) if wait else 0
    job = await _snapshot(jobs, job_id, scope=caller.scope)
    finished = JobStatus(job.status).finished
    if wait and not finished and await events.wait_for_change(job_id, cursor, wait):
        job = await _snapshot(jobs, job_id, scope=caller.scope)
    return job


@router.get(
    "/{job_id}/pages/{page_number}",
    operation_id="get_job_page",
    response_model=ClientPage,
    responses=errors(404, 422),
)
async def get_job_page(
    jobs: JobsDep, caller: CallerDep, job_id: JobId, page_number: PageNumber
) -> ClientPage:
    """One page: its status, text, line boxes and error."""
    page = await jobs.get_page(job_id, page_number, scope=caller.scope)
    return ClientPage(
        job_id=job_id,
        page_number=page.page_number,
        status=page.status,
        text=page.text,
        boxes=text_boxes(page.boxes),
        source=page.source,
        error=page.error,
    )


@router.get(
    "/{job_id}/pages/{page_number}/thumbnail",
    operation_id="get_job_page_thumbnail",
    response_class=Response,
    responses={
        200: {
            "description": "The page's thumbnail (WebP)",
            "content": {THUMBNAIL_MEDIA_TYPE: BINARY},
        },
        **errors(404, 422, 503),
    },
)
async def get_job_page_thumbnail(
    thumbnails: ThumbnailsDep,
    caller: CallerDep,
    request: Request,
    job_id: JobId,
    page_number: PageNumber,
    size: Annotated[
        PageThumbnailSize, Query(description="the box, `size` by `size` pixels")
    ] = PageThumbnailSize.MEDIUM,
) -> Response:
    """The rendered page in a `size` box (WebP, aspect kept), made at its first request and
    kept beside the page; with a strong ETag (304 on a matching If-None-Match) and a year's
    Cache-Control. 404 for a page not rendered yet."""
    data, etag = await thumbnails.page_thumbnail(job_id, page_number, int(size), scope=caller.scope)
    return cached_bytes(request, data, THUMBNAIL_MEDIA_TYPE, etag)


def _sse(event: JobEventOut) -> ServerSentEvent:
    return ServerSentEvent(
        data=event.model_dump_json(),
        event=event.type.value,
        id=str(event.id) if event.id is not None else None,
    )


@router.get(
    "/{job_id}/events",
    operation_id="get_job_events",
    response_class=EventSourceResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"},
        **errors(404, 422),
    },
)
async def get_job_events(
    jobs: JobsDep,
    events: EventsDep,
    caller: CallerDep,
    job_id: JobId,
    last_event_id: Annotated[int | None, Header(ge=0)] = None,
) -> EventSourceResponse:
    """Server-Sent Events: `job.snapshot` first (no id), then `page.done`, `page.failed` and
    the job's own events, each with an `id:`. The stream ends after `job.completed`,
    `job.failed`, `job.cancelled` or `job.deleted`. A reconnect with `Last-Event-ID` gets every
    event after that id. A comment line comes every 15 s as a heartbeat."""
    snapshot, following = await _follow(jobs, events, job_id, last_event_id, scope=caller.scope)

    async def stream() -> AsyncIterator[ServerSentEvent]:
        yield _sse(snapshot)
        if following is None:
            return
        async for event in following:
            if event is not None:
                yield _sse(event)

    return EventSourceResponse(stream(), ping=int(HEARTBEAT_S), send_timeout=30)


@router.websocket("/{job_id}/ws")
async def job_websocket(websocket: WebSocket, job_id: uuid.UUID) -> None:
    """The job's events as JSON messages: the same events as `/events`, a snapshot first.
    `?last_event_id=` resumes after that event. The handshake carries the same headers as the
    other client routes (`Authorization` or `X-API-Key`, `X-Tenant-Id`). An unknown job, or
    another tenant's, is closed with code 1008, and so is a caller refused (with the reason)."""
    components: Components = websocket.app.state.components
    raw_last = websocket.query_params.get("last_event_id")
    last_event_id = int(raw_last) if raw_last and raw_last.isdigit() else None
    try:
        caller = await websocket_caller(websocket)
        snapshot, following = await _follow(
            components.jobs, components.events, job_id, last_event_id, scope=caller.scope
        )
    except GatewayError as exc:
        # Accepted first: a close before the handshake is an HTTP 403, which carries no code.
        # NotFound (an unknown job, or another tenant's) and a refused caller both close 1008.
        await websocket.accept()
        await websocket.close(code=WS_UNKNOWN_JOB, reason=exc.detail[:120])
        return
    await websocket.accept()

    async def send_events() -> None:
        await websocket.send_text(snapshot.model_dump_json())
        if following is not None:
            async for event in following:
                if event is not None:
                    await websocket.send_text(event.model_dump_json())
        await websocket.close()

    async def until_client_leaves() -> None:
        """A quiet job sends nothing for a long time: the client's close is noticed here."""
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass

    sender = asyncio.create_task(send_events())
    watcher = asyncio.create_task(until_client_leaves())
    try:
        await asyncio.wait({sender, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sender, watcher):
            task.cancel()
        results = await asyncio.gather(sender, watcher, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception) and not isinstance(result, WebSocketDisconnect):
            raise result


@router.post(
    "/{job_id}/cancel",
    operation_id="cancel_job",
    response_model=Cancelled,
    status_code=status.HTTP_200_OK,
    responses=errors(404, 422),
)
async def cancel_job(jobs: JobsDep, caller: CallerDep, job_id: JobId) -> Cancelled:
    """Pages not done yet become `cancelled` and are never published again; the job becomes
    `cancelled`. When this answers, no page of the job is being published. Cancelling a
    cancelled or finished job changes nothing and answers 200."""
    outcome = await jobs.cancel(job_id, scope=caller.scope)
    return Cancelled(
        job_id=job_id, status=outcome.job.status, cancelled_pages=outcome.cancelled_pages
    )


@router.delete(
    "/{job_id}",
    operation_id="delete_job",
    response_model=Deleted,
    responses=errors(404, 422),
)
async def delete_job(jobs: JobsDep, caller: CallerDep, job_id: JobId) -> Deleted:
    """Delete the job: its pages' files and its rows. Its event readers get `job.deleted`."""
    await jobs.delete_job(job_id, scope=caller.scope)
    return Deleted(deleted="job", job_id=job_id)
