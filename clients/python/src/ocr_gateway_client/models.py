"""The gateway's answers as typed models, mirroring its OpenAPI schema.

Unknown fields are kept (`extra="allow"`), so a newer gateway that adds a field does not break
an older client.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

FINISHED_STATUSES = frozenset({"completed", "failed", "cancelled"})
TERMINAL_EVENTS = frozenset({"job.completed", "job.failed", "job.cancelled", "job.deleted"})

ResultFormat = Literal["txt", "json", "zip", "pdf"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class PageState(_Model):
    page_number: int
    status: str


class Job(_Model):
    """A job: its status, counters and each rendered page's status.

    `submit()` returns the fields the batch answer carries (`job_id`, `status`, `filename`,
    `total_page_number`); the rest keep their defaults there, which is what they are for a job
    just accepted. `get()` and `wait()` fill every field. `tenant` is the tenant the job
    belongs to (None where the answer does not say: `submit()`'s, or an older gateway's).
    """

    job_id: uuid.UUID
    status: str
    filename: str
    total_page_number: int
    tenant: str | None = None
    media_type: str | None = None
    rendered_pages: int = 0
    completed_pages: int = 0
    failed_pages: int = 0
    cancelled_pages: int = 0
    error: str | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    pages: list[PageState] = Field(default_factory=list)

    @property
    def finished(self) -> bool:
        """Completed, failed or cancelled: nothing more happens to the job."""
        return self.status in FINISHED_STATUSES


class JobSummary(_Model):
    job_id: uuid.UUID
    tenant: str | None = None
    filename: str
    media_type: str
    status: str
    total_page_number: int
    completed_pages: int
    failed_pages: int
    created_at: dt.datetime
    updated_at: dt.datetime


class JobList(_Model):
    jobs: list[JobSummary]
    next_cursor: str | None


class TextBox(_Model):
    """A recognised line: its text, the engine's confidence, and its outline as `(x, y)` points
    in the page image's pixels."""

    text: str
    confidence: float | None
    polygon: list[tuple[float, float]]


class Page(_Model):
    job_id: uuid.UUID
    page_number: int
    status: str
    text: str | None
    boxes: list[TextBox]
    source: str
    error: str | None


class Event(_Model):
    """One progress event. `id` is its place in the job's stream; a `job.snapshot` (sent first,
    and again after each reconnect) has none."""

    id: int | None
    type: str
    job_id: uuid.UUID
    page_number: int | None = None
    status: str
    total_page_number: int
    completed_pages: int
    failed_pages: int
    cancelled_pages: int = 0
    created_at: dt.datetime

    @property
    def terminal(self) -> bool:
        """The job's last event: completed, failed, cancelled or deleted."""
        return self.type in TERMINAL_EVENTS


class Cancelled(_Model):
    job_id: uuid.UUID
    status: str
    cancelled_pages: int


class Deleted(_Model):
    deleted: str
    job_id: uuid.UUID
    page_number: int | None = None
