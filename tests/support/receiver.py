"""A real HTTP receiver of webhooks on 127.0.0.1: it records what arrives and answers as a test
scripts it (statuses in turn, a delay, a `Retry-After`), and can go down and come back on the
same port, as a receiver that restarts would.

Plain asyncio HTTP/1.1 with keep-alive: the sender's connection pool is exercised as it is
against any server, and nothing here is shared with the gateway's own code.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from tests.support.net import free_port

REASONS = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    429: "Too Many Requests",
    500: "Internal Server Error",
}


@dataclass(frozen=True, slots=True)
class Received:
    """One request as it arrived: method, path, headers (names in lower case), body."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.perf_counter)

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass(frozen=True, slots=True)
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class Receiver:
    """Started with `async with Receiver() as receiver`; `url` is where to send webhooks."""

    def __init__(
        self, port: int | None = None, *, decide: Callable[[Received], Answer] | None = None
    ) -> None:
        """`decide`, when given, answers every request (a bench's random failures)."""
        self.port = port or free_port()
        self.decide = decide
        self.received: list[Received] = []
        self.answers: deque[Answer] = deque()  # answered in turn, then `default`
        self.default = Answer(200)
        self.delay_s = 0.0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._arrived = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def script(self, *answers: Answer | int) -> None:
        """Answer the next requests with these (a status alone is an empty answer)."""
        self.answers.extend(a if isinstance(a, Answer) else Answer(a) for a in answers)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        """Go down: refuse new connections and drop the open ones."""
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> Receiver:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    async def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        """Wait until at least `count` requests have arrived; return them all."""
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                self._arrived.clear()
                if len(self.received) >= count:
                    break
                await self._arrived.wait()
        return list(self.received)

    def ids(self) -> list[str]:
        return [request.webhook_id for request in self.received]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                request_line, *lines = head.decode("latin-1").split("\r\n")
                method, path, _version = request_line.split(" ", 2)
                headers: dict[str, str] = {}
                for line in lines:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                request = Received(method, path, headers, body)
                self.received.append(request)
                self._arrived.set()
                if self.decide is not None:
                    answer = self.decide(request)
                else:
                    answer = self.answers.popleft() if self.answers else self.default
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                closing = headers.get("connection", "").lower() == "close"
                writer.write(_response(answer, closing))
                await writer.drain()
                if closing:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def _response(answer: Answer, closing: bool) -> bytes:
    reason = REASONS.get(answer.status, "Status")
    lines = [f"HTTP/1.1 {answer.status} {reason}", f"Content-Length: {len(answer.body)}"]
    lines += [f"{name}: {value}" for name, value in answer.headers.items()]
    lines.append(f"Connection: {'close' if closing else 'keep-alive'}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + answer.body
