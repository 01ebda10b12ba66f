"""Response models of the upload, dispatch and health routes; the job models are in
`jobs.schemas`. Every route declares one, so generated clients get real types."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field


class ErrorResponse(BaseModel):
    error: str
    detail: Any
    index: int | None = Field(
        default=None,
        ge=0,
        description="Answers to a batch (`POST /jobs`) only: the refused file, counted from 0"
        " in the order sent. Absent when the refusal is about the request as a whole.",
    )


class UploadAccepted(BaseModel):
    """The job made for an upload (202), or the tenant's live job that an identical upload
    made before (200, `deduplicated`), as that job is now."""

    job_id: uuid.UUID
    tenant: str
    status: str = Field(
        default="pending",
        description="`pending` for a new job; a deduplicated upload's job may be further on.",
    )
    filename: str
    media_type: str
    total_page_number: int
    deduplicated: bool = Field(
        default=False,
        description="True when the same bytes with the same options were already uploaded"
        " by this tenant and that job (neither failed nor cancelled) is answered instead.",
    )


class BatchAccepted(BaseModel):
    """One job a file, in the order the files were sent. The answer is 200 when every file
    was deduplicated (nothing new was made), else 202."""

    jobs: list[UploadAccepted]


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
    # Where artefacts live (OCR_GATEWAY_STORAGE): the folder, or the S3 bucket, answering.
    storage: DependencyHealth
    publishing: bool
