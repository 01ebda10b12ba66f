"""Reading a job's Server-Sent Events stream as a client does, over any httpx client."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson


@dataclass(frozen=True, slots=True)
class SseEvent:
    kind: str
    data: dict[str, Any]
    id: int | None  # None for a snapshot


async def job_events(
    client: httpx.AsyncClient, job_id: str, *, last_event_id: int | None = None
) -> AsyncGenerator[SseEvent, None]:
    """The events of `/jobs/{job_id}/events` until the stream ends (heartbeats skipped);
    `last_event_id` resumes after that event."""
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    async with client.stream("GET", f"/jobs/{job_id}/events", headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        fields: dict[str, str] = {}
        async for line in response.aiter_lines():
            if line.startswith(":"):
                continue
            if line:
                name, _, value = line.partition(":")
                fields[name] = value.strip()
                continue
            if "event" in fields:
                event_id = int(fields["id"]) if "id" in fields else None
                yield SseEvent(fields["event"], orjson.loads(fields["data"]), event_id)
            fields = {}
