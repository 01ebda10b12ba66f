"""Bodies and answers of the operator's dispatch settings: the publishing rate limit, the
dispatch state, and a job's priority."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field

# A job's priority: 0-9, higher first. A task's pages (`tasks.TASK_PRIORITY`, 10) are above
# every one of them.
MAX_JOB_PRIORITY = 9


class RateLimit(BaseModel):
    """`PUT /admin/dispatch/rate`: pages per second over every dispatcher together, or null
    for no cap."""

    model_config = ConfigDict(extra="forbid")

    pages_per_second: float | None = Field(
        ...,
        gt=0,
        le=1_000_000,
        strict=True,
        description="pages per second, over all dispatchers; null: no cap",
    )


class DispatchStatus(BaseModel):
    """Whether an operator's stop is in force, and the rate limit (null: none)."""

    stopped: bool
    pages_per_second: float | None


class PriorityChange(BaseModel):
    """`PUT /admin/jobs/{job_id}/priority`."""

    model_config = ConfigDict(extra="forbid")

    priority: int = Field(
        ..., ge=0, le=MAX_JOB_PRIORITY, strict=True, description="0-9, higher first"
    )


class JobPriority(BaseModel):
    job_id: uuid.UUID
    priority: int
    pending_pages: int = Field(description="pending pages that took the new priority")
