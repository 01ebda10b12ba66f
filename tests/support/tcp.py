"""The app served over real TCP by uvicorn, and a raw HTTP/1.1 connection to it.

For what only a real server shows: whether a connection survives an error answer. The raw
connection sends requests one after another on one socket, so a connection the server dropped
shows up as an error on the next request instead of being hidden by a client's pool.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import uvicorn
from starlette.types import ASGIApp

READ_TIMEOUT_S = 30.0


@contextlib.asynccontextmanager
async def served(app: ASGIApp, port: int = 0) -> AsyncIterator[int]:
    """Serve `app` on 127.0.0.1 (its lifespan already running elsewhere), on `port` or a free
    one; yields the port."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_config=None)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = int(server.servers[0].sockets[0].getsockname()[1])
    try:
        yield port
    finally:
        server.should_exit = True
        await task


class ConnectionDropped(Exception):
    """The server closed the connection without answering the request."""


@dataclass(frozen=True, slots=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


class RawConnection:
    """One keep-alive HTTP/1.1 connection; `request` sends one request and reads its answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> RawConnection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> RawResponse:
        try:
            self.writer.write(_head(method, path, len(body), headers or {}) + body)
            await self.writer.drain()
            async with asyncio.timeout(READ_TIMEOUT_S):
                return await self._read_response()
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            raise ConnectionDropped(f"{method} {path}: {type(exc).__name__}: {exc}") from exc

    async def request_early_answer(
        self, method: str, path: str, body: bytes, headers: dict[str, str], head_start: int = 65536
    ) -> RawResponse:
        """Send the request line, headers and the first `head_start` bytes of the body, then
        read the answer: for a server that answers before reading the whole body."""
        self.writer.write(_head(method, path, len(body), headers) + body[:head_start])
        await self.writer.drain()
        async with asyncio.timeout(READ_TIMEOUT_S):
            return await self._read_response()

    async def _read_response(self) -> RawResponse:
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        headers = {}
        for line in header_lines:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return RawResponse(status, headers, body)


def _head(method: str, path: str, length: int, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: gateway", f"Content-Length: {length}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def multipart_file(
    content: bytes, filename: str, boundary: str = "raw-7d1f0c"
) -> tuple[bytes, str]:
    """A multipart body with one `file` field, and its Content-Type."""
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"'
        "\r\nContent-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head + content + f"\r\n--{boundary}--\r\n".encode(), (
        f"multipart/form-data; boundary={boundary}"
    )
