"""Response models: every route declares one, so generated clients get real types."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class ErrorResponse(BaseModel):
    error: str
    detail: Any


class UploadAccepted(BaseModel):
    job_id: uuid.UUID
    status: Literal["pending"] = "pending"
    filename: str
    media_type: str
    total_page_number: int


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


class StartAccepted(BaseModel):
    action: Literal["start"] = "start"
    scope: Literal["all", "job", "page"]
    job_id: uuid.UUID | None
    page_number: int | None
    pending_pages: int


class ActionAccepted(BaseModel):
    action: str
    detail: str


class Deleted(BaseModel):
    deleted: Literal["job", "page"]
    job_id: uuid.UUID
    page_number: int | None = None


class DependencyHealth(BaseModel):
    ok: bool
    detail: str


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    version: str
    database: DependencyHealth
    rabbitmq: DependencyHealth
    publishing: bool
