"""`/metrics` of the processes without FastAPI (the dispatcher, a worker), on asyncio streams.

A few lines of HTTP/1.0 on the process's own event loop: no thread, no framework. It answers
`GET /metrics` (and `/`) with the registry in the text format, anything else with 404, and
closes each connection after its answer. The exposition is rendered in a thread, so a scrape
never holds the loop while it formats.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 5.0
MAX_HEAD_BYTES = 8192
# The text format every Prometheus version reads (the names here are plain ASCII).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


async def exposition() -> bytes:
    """The default registry in Prometheus' text format, formatted off the event loop."""
    return await asyncio.to_thread(generate_latest)


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            head = await reader.readuntil(b"\r\n\r\n")
        parts = head[:MAX_HEAD_BYTES].split(b"\r\n", 1)[0].split()
        method, target = (parts[0], parts[1]) if len(parts) >= 2 else (b"", b"")
        path = target.split(b"?", 1)[0]
        if method in (b"GET", b"HEAD") and path in (b"/metrics", b"/"):
            body = await exposition()
            status, content_type = b"200 OK", CONTENT_TYPE.encode()
        else:
            body = b'{"error": "not_found", "detail": "only GET /metrics is served here"}'
            status, content_type = b"404 Not Found", b"application/json"
        writer.write(
            b"HTTP/1.0 "
            + status
            + b"\r\nContent-Type: "
            + content_type
            + b"\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\nConnection: close\r\n\r\n"
            + (b"" if method == b"HEAD" else body)
        )
        await writer.drain()
    except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def serve_metrics(host: str, port: int, *, span: int = 1) -> asyncio.Server | None:
    """Listen on `port` (or, when taken, the next free one of `span` ports); None when `port`
    is 0 (off) or every port of the span is taken, which is logged and never fatal."""
    if port == 0:
        return None
    for candidate in range(port, min(65536, port + span)):
        try:
            server = await asyncio.start_server(_answer, host, candidate, limit=MAX_HEAD_BYTES)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                log.warning("metrics not served on %s:%d: %s", host, candidate, exc)
                return None
            continue
        log.info("metrics served at http://%s:%d/metrics", host, candidate)
        return server
    log.warning("metrics not served: ports %d-%d on %s are taken", port, port + span - 1, host)
    return None
