"""Response models of the job domain, shared by the admin routes (and the client API)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict


class JobSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    job_id: uuid.UUID
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
    publish_attempts: int
    updated_at: dt.datetime


class JobDetail(JobSummary):
    pages: list[PageDetail]
