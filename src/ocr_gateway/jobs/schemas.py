"""Response models of the job domain: the operator's views (`JobSummary`, `JobDetail`) and
the client API's (`ClientJob`, `ClientPage`)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ocr_gateway.convert.schemas import DownloadLink

# Where a page's text comes from: an OCR worker, or (`text_layer=auto`) the PDF's own text.
PageSourceWord = Literal["ocr", "text_layer"]
SOURCE_HELP = (
    "`text_layer`: read from the PDF's own text layer at render time, never OCR'd;"
    " `ocr`: recognised (or, while not done, to be recognised) by an OCR worker."
)


class JobSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    job_id: uuid.UUID
    tenant: str
    filename: str
    media_type: str
    status: str
    total_page_number: int
    rendered_pages: int
    completed_pages: int
    failed_pages: int
    excluded_pages: list[int]
    error: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


class JobList(BaseModel):
    items: list[JobSummary]
    next_cursor: str | None
    limit: int


class PageDetail(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    page_number: int
    path: str
    status: str
    text: str | None
    error: str | None
    boxes: list[dict[str, Any]] | None
    source: PageSourceWord = Field(default="ocr", description=SOURCE_HELP)
    publish_attempts: int
    updated_at: dt.datetime


class JobDetail(JobSummary):
    pages: list[PageDetail]


class PageState(BaseModel):
    page_number: int
    status: str
    source: PageSourceWord = Field(default="ocr", description=SOURCE_HELP)


class ClientJob(BaseModel):
    """A job as its client sees it: status, counters, timestamps and each page's status."""

    job_id: uuid.UUID
    tenant: str
    filename: str
    media_type: str
    status: str
    total_page_number: int
    rendered_pages: int
    completed_pages: int
    failed_pages: int
    cancelled_pages: int
    error: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    pages: list[PageState]
    # Files made from the job once it is done: a `/convert/batch` job's workbook.
    downloads: list[DownloadLink] = Field(default_factory=list)


class ClientJobSummary(BaseModel):
    job_id: uuid.UUID
    tenant: str
    filename: str
    media_type: str
    status: str
    total_page_number: int
    completed_pages: int
    failed_pages: int
    created_at: dt.datetime
    updated_at: dt.datetime


class ClientJobList(BaseModel):
    jobs: list[ClientJobSummary]
    next_cursor: str | None


class TextBox(BaseModel):
    """A recognised line: its text, the engine's confidence, and its outline as `[x, y]` points
    in the page image's pixels."""

    text: str
    confidence: float | None
    polygon: list[tuple[float, float]]


def text_boxes(boxes: list[dict[str, Any]] | None) -> list[TextBox]:
    """Stored line boxes (`bbox` corners) as outlines of four `[x, y]` points."""
    outlines = []
    for box in boxes or []:
        x0, y0, x1, y1 = (float(value) for value in box["bbox"])
        outlines.append(
            TextBox(
                text=str(box.get("text", "")),
                confidence=box.get("confidence"),
                polygon=[(x0, y0), (x1, y0), (x1, y1), (x0, y1)],
            )
        )
    return outlines


class ClientPage(BaseModel):
    job_id: uuid.UUID
    page_number: int
    status: str
    text: str | None
    boxes: list[TextBox]
    source: PageSourceWord = Field(default="ocr", description=SOURCE_HELP)
    error: str | None


class Cancelled(BaseModel):
    job_id: uuid.UUID
    status: str
    cancelled_pages: int
