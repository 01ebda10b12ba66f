"""The event types and the one shape of an event, as clients receive it."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Any

from pydantic import BaseModel


class EventType(enum.StrEnum):
    SNAPSHOT = "job.snapshot"
    PAGE_DONE = "page.done"
    PAGE_FAILED = "page.failed"
    JOB_COMPLETED = "job.completed"
    JOB_FAILED = "job.failed"
    JOB_CANCELLED = "job.cancelled"
    JOB_DELETED = "job.deleted"

    @property
    def terminal(self) -> bool:
        """After this event nothing more happens to the job: its stream ends."""
        return self in TERMINAL_EVENTS


TERMINAL_EVENTS = frozenset(
    {EventType.JOB_COMPLETED, EventType.JOB_FAILED, EventType.JOB_CANCELLED, EventType.JOB_DELETED}
)


class JobEventOut(BaseModel):
    """An event: `id` is its place in the job's stream (none for a snapshot), `data` carries the
    job's counters and status at the moment of the event."""

    id: int | None
    type: EventType
    job_id: uuid.UUID
    page_number: int | None = None
    status: str
    total_page_number: int
    completed_pages: int
    failed_pages: int
    cancelled_pages: int = 0
    created_at: dt.datetime

    @classmethod
    def from_row(
        cls,
        *,
        id: int | None,
        type: str,
        job_id: uuid.UUID,
        page_number: int | None,
        data: dict[str, Any],
        created_at: dt.datetime,
    ) -> JobEventOut:
        return cls(
            id=id,
            type=EventType(type),
            job_id=job_id,
            page_number=page_number,
            created_at=created_at,
            **data,
        )
