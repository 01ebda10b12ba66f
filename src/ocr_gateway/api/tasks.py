"""OCR in one call, in the shapes of the Celery-based OCR API that clients already code against:
`POST /image-sync` answers the text, `POST /image` a `task_id`, `GET /image?task_id=` the
task's status and result, and `WS /watch-task?task_id=` its progress.

The app serves this router twice, at the root (the paths those clients call; left out of the
OpenAPI document, as it is the same operations again) and under /api/v1. A task is a job of
the caller's tenant; another tenant's task is not found, as an unknown one is.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, WebSocket, status
from fastapi.responses import JSONResponse
from fastapi.websockets import WebSocketDisconnect

from ocr_gateway.api.deps import CallerDep, TasksDep, websocket_caller
from ocr_gateway.api.openapi import CALLER_ERRORS, errors
from ocr_gateway.components import Components
from ocr_gateway.core.errors import GatewayError
from ocr_gateway.tasks.schemas import (
    TaskFailed,
    TaskRequest,
    TaskResult,
    TaskState,
    TaskStatus,
    TaskSubmitted,
    TaskTimedOut,
)
from ocr_gateway.tasks.service import TaskService

router = APIRouter(tags=["tasks"], responses=errors(*CALLER_ERRORS))
# The same handlers at the root paths, left out of the OpenAPI document (listed once, above).
root_router = APIRouter(include_in_schema=False)

# What a task's body can be refused for: too large a body, too many or too large images, or
# pages over the limits (413), bytes that are no supported image (415), a body that is not the
# shape, bad base64 or an image that cannot be read (422), a tenant's quota (429), and
# inspection that cannot run right now (503, with Retry-After).
TASK_ERRORS = (400, 413, 415, 422, 429, 503)
# The close code for "policy violation": an unknown task (or another tenant's), a refused caller.
WS_UNKNOWN_TASK = 1008


def _request_body() -> dict[str, Any]:
    """OpenAPI for the JSON body, which the route reads itself: it is counted while it streams,
    and refused past MAX_JSON_BODY_BYTES before it is all in memory."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": TaskRequest.model_json_schema()}},
        }
    }


TaskId = Annotated[uuid.UUID, Query(description="The task's id (its job's id)")]


@router.post(
    "/image-sync",
    operation_id="ocr_image_sync",
    response_model=TaskResult,
    responses={
        **errors(*TASK_ERRORS),
        502: {"model": TaskFailed, "description": "The task failed or was cancelled"},
        504: {
            "model": TaskTimedOut,
            "description": "No result within SYNC_TIMEOUT_S; GET /image returns it later",
        },
    },
    openapi_extra=_request_body(),
)
@root_router.post("/image-sync", response_model=TaskResult)
async def image_sync(tasks: TasksDep, caller: CallerDep, request: Request) -> Any:
    """OCR one image (`result` is its text) or a list (`result` is their texts, in order),
    answered when the text is there. After `OCR_GATEWAY_SYNC_TIMEOUT_S` the answer is 504 with
    the `task_id`; the task goes on, and a client that leaves does not cancel it. While an
    operator's stop is in force: 503 with Retry-After."""
    started = time.monotonic()
    submitted = await tasks.submit(
        request.stream(), request.headers.get("content-length"), caller, sync=True
    )
    remaining = tasks.settings.sync_timeout_s - (time.monotonic() - started)
    view = await _wait_unless_gone(tasks, request, submitted.task_id, caller.scope, remaining)
    if view is None or not view.state.finished:
        state = view.state if view is not None else TaskState.PENDING
        timed_out = TaskTimedOut(task_id=submitted.task_id, status=state)
        return JSONResponse(timed_out.model_dump(mode="json"), status_code=504)
    if view.state == TaskState.FAILURE:
        failed = TaskFailed(task_id=submitted.task_id, error=view.error or "the task failed")
        return JSONResponse(failed.model_dump(mode="json"), status_code=502)
    assert view.result is not None
    return TaskResult(
        task_id=submitted.task_id,
        result=view.result,
        pages=view.detail() if submitted.detail else None,
    )


async def _wait_unless_gone(
    tasks: TaskService, request: Request, task_id: uuid.UUID, scope: str | None, timeout: float
) -> Any:
    """The task once finished or after `timeout`; None if the client left first (the task
    goes on: its result is kept for `GET /image`)."""
    waiting = asyncio.create_task(tasks.wait(task_id, scope=scope, timeout=timeout))
    leaving = asyncio.create_task(_until_disconnected(request))
    try:
        await asyncio.wait({waiting, leaving}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        leaving.cancel()
        if not waiting.done():
            waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await leaving
    if waiting.cancelled():
        return None
    return waiting.result()


async def _until_disconnected(request: Request) -> None:
    """Returns when the client closes the connection (its body has been read by now)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


@router.post(
    "/image",
    operation_id="ocr_image_submit",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TaskSubmitted,
    responses=errors(*TASK_ERRORS),
    openapi_extra=_request_body(),
)
@root_router.post("/image", status_code=status.HTTP_202_ACCEPTED, response_model=TaskSubmitted)
async def image_submit(tasks: TasksDep, caller: CallerDep, request: Request) -> TaskSubmitted:
    """Submit one image or a list; `GET /image?task_id=` or `WS /watch-task` follow it. While
    an operator's stop is in force it is accepted, and waits for the start like every job."""
    submitted = await tasks.submit(
        request.stream(), request.headers.get("content-length"), caller, sync=False
    )
    return TaskSubmitted(task_id=submitted.task_id)


@router.get(
    "/image",
    operation_id="ocr_image_status",
    response_model=TaskStatus,
    response_model_exclude_none=False,
    responses=errors(404, 422),
)
@root_router.get("/image", response_model=TaskStatus)
async def image_status(tasks: TasksDep, caller: CallerDep, task_id: TaskId) -> TaskStatus:
    """The task's status: PENDING (not published yet), STARTED, SUCCESS or FAILURE (with
    `error`; `cancelled` for a cancelled task). `result` is null until SUCCESS."""
    return (await tasks.view(task_id, scope=caller.scope)).status()


@router.websocket("/watch-task")
@root_router.websocket("/watch-task")
async def watch_task(websocket: WebSocket) -> None:
    """`{task_id, status, done, total, result}` at once and on every change; closed after
    SUCCESS or FAILURE. The handshake carries the client routes' headers. An unknown task (or
    another tenant's), a malformed id and a refused caller are closed with code 1008."""
    components: Components = websocket.app.state.components
    try:
        raw = websocket.query_params.get("task_id", "")
        try:
            task_id = uuid.UUID(raw)
        except ValueError:
            raise _NoSuchTask(f"task_id {raw[:60]!r} is not a task id") from None
        caller = await websocket_caller(websocket)
        first, changes = await components.tasks.watch(task_id, scope=caller.scope)
    except GatewayError as exc:
        # Accepted first: a close before the handshake is an HTTP 403, which carries no code.
        await websocket.accept()
        await websocket.close(code=WS_UNKNOWN_TASK, reason=exc.detail[:120])
        return
    await websocket.accept()

    async def send_progress() -> None:
        await websocket.send_text(first.progress().model_dump_json())
        async for view in changes:
            await websocket.send_text(view.progress().model_dump_json())
        await websocket.close()

    async def until_client_leaves() -> None:
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass

    sender = asyncio.create_task(send_progress())
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


class _NoSuchTask(GatewayError):
    status_code = 404
    kind = "not_found"
