"""A Server-Sent Events parser, as the HTML standard describes it, over lines of text."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    event: str
    data: str
    id: str | None
    retry: int | None


async def parse_events(lines: AsyncIterable[str]) -> AsyncIterator[ServerSentEvent]:
    """Events from a stream's lines (without their line endings). Comment lines (heartbeats)
    are skipped; an event is dispatched at the blank line that ends it. Unlike a browser's
    EventSource, `id` is that of the event itself (None when it has no `id:` line): the caller
    keeps the last one it saw."""
    event = ""
    data: list[str] = []
    event_id: str | None = None
    retry: int | None = None
    async for line in lines:
        if not line:
            if data:
                yield ServerSentEvent(event or "message", "\n".join(data), event_id, retry)
            event, data, event_id, retry = "", [], None, None
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
        elif field == "id" and "\0" not in value:
            event_id = value
        elif field == "retry" and value.isdigit():
            retry = int(value)
