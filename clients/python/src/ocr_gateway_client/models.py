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
# An option's value as the upload routes read it: `text_layer` is `auto` or `off`.
TextLayer = Literal["auto", "off"]
# A thumbnail's box, by the name its URL carries.
ThumbnailSize = Literal["100x100", "300x300", "1200x1200"]
IMAGE_FINISHED_STATUSES = frozenset({"DONE", "FAILED"})


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class PageState(_Model):
    page_number: int
    status: str
    # `text_layer`: read from the PDF's own text at render time; `ocr`: by an OCR worker.
    source: str = "ocr"


class Download(_Model):
    """A file made from a finished job: `kind` `xlsx` is the workbook of a `/convert/batch`
    job's tables. Pass it (or its `file_id`) to `download_file()`."""

    file_id: uuid.UUID
    kind: str
    url: str


class Job(_Model):
    """A job: its status, counters and each rendered page's status.

    `submit()` returns the fields the batch answer carries (`job_id`, `status`, `filename`,
    `total_page_number`); the rest keep their defaults there, which is what they are for a job
    just accepted. `get()` and `wait()` fill every field. `tenant` is the tenant the job
    belongs to (None where the answer does not say: `submit()`'s, or an older gateway's).
    `deduplicated` (from `submit()`): the tenant had sent the same bytes with the same options
    before, and this is that job. `downloads`: the files made from the job once it is done
    (a `/convert/batch` job's workbook), empty before and on an older gateway.
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
    downloads: list[Download] = Field(default_factory=list)
    deduplicated: bool = False

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
    error: str | None
    # `text_layer`: read from the PDF's own text at render time; `ocr`: by an OCR worker.
    source: str = "ocr"


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


class ConvertedFile(_Model):
    """One file of a `/convert/batch` batch: its place in the request, its name, and how many
    of the job's pages it made."""

    index: int
    filename: str
    total_page_number: int


class ConvertAccepted(_Model):
    """The one job a `/convert/batch` batch makes (its pages are every page of every file, in
    order). `deduplicated`: the tenant sent the same files with the same options before, and
    this is that job."""

    job_id: uuid.UUID
    status: str
    files: list[ConvertedFile]
    deduplicated: bool = False


class ImageStatus(_Model):
    """An `/images` upload: `status` is `PROCESSING`, `DONE` or `FAILED` (with `error`).

    `upload_image()` returns the upload's answer (`id`, `status`, `message`, `deduplicated`);
    `image()` the image's state, with `original_url` and, once DONE, `thumbnails`' URLs by box.
    Fields an answer does not carry keep their defaults.
    """

    id: uuid.UUID
    status: str
    message: str | None = None
    deduplicated: bool = False
    original_url: str | None = None
    thumbnails: dict[str, str] | None = None
    error: str | None = None
    filename: str | None = None
    media_type: str | None = None
    width: int | None = None
    height: int | None = None

    @property
    def finished(self) -> bool:
        """DONE or FAILED: nothing more happens to the image."""
        return self.status in IMAGE_FINISHED_STATUSES


class ImageDeleted(_Model):
    deleted: bool
    id: uuid.UUID
