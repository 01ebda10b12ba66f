"""The one handler that turns errors into `{"error": kind, "detail": text}` responses, plus
any extra fields the error carries (a refused batch's `index`).

`ErrorBoundary` is the outermost layer of the app. It answers an unexpected error with the
same JSON 500 and returns normally, so the server keeps the connection open for the client's
next request (Starlette's own last-resort handler re-raises, and the server then drops the
connection without a word). And an answer sent before the request body was read to its end
(an upload refused mid-stream) first reads and drops what is left of the body when its
Content-Length says that is at most `DRAIN_BYTES`, within `DRAIN_S`, so the connection stays
usable; otherwise it says `Connection: close`, since the unread rest of the body makes the
connection unusable."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ocr_gateway.core.errors import GatewayError

log = logging.getLogger(__name__)

_HTTP_KINDS = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GatewayError)
    async def gateway_error(_request: Request, exc: GatewayError) -> JSONResponse:
        return JSONResponse(
            {"error": exc.kind, "detail": exc.detail, **exc.fields},
            status_code=exc.status_code,
            headers=exc.headers or None,
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}"
            for err in exc.errors()
        )
        return JSONResponse({"error": "validation_error", "detail": problems}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = _HTTP_KINDS.get(exc.status_code, "http_error")
        return JSONResponse(
            {"error": kind, "detail": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    app.add_middleware(ErrorBoundary)


DRAIN_BYTES = 8 * 1024 * 1024
DRAIN_S = 5.0
INTERNAL_ERROR = {"error": "internal_error", "detail": "the gateway hit an unexpected error"}


def _body_length(scope: Scope) -> int | None:
    """The request body's length: 0 for none, None when unknown (chunked)."""
    headers = dict(scope.get("headers") or [])
    if b"transfer-encoding" in headers:
        return None
    length = headers.get(b"content-length", b"0").strip()
    return int(length) if length.isdigit() else None


class ErrorBoundary:
    """See the module's docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _body_length(scope)
        body_done = length == 0
        received = 0
        started = False

        async def tracked_receive() -> Message:
            nonlocal body_done, received
            message = await receive()
            received += len(message.get("body", b""))
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                body_done = True
            return message

        async def drain() -> None:
            """Read and drop the rest of a body known to be small (a refused upload answered
            from its Content-Length, or of unknown length, is not read: it may be huge)."""
            if length is None or length - received > DRAIN_BYTES:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DRAIN_S):
                    while not body_done:
                        await tracked_receive()

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if not body_done:
                    await drain()
                if not body_done:
                    headers = [(k, v) for k, v in message.get("headers", []) if k != b"connection"]
                    message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, tracked_receive, guarded_send)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise  # half an answer is out: only dropping the connection can end it
            body = orjson.dumps(INTERNAL_ERROR)
            await guarded_send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await guarded_send({"type": "http.response.body", "body": body})
