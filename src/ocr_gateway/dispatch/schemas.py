"""Bodies and answers of the operator's dispatch settings: the publishing rate limit, the
dispatch state, and a job's priority."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field

# A job's priority: 0-9, higher first. A task's pages (`tasks.TASK_PRIORITY`, 10) are above
# every one of them.
MAX_JOB_PRIORITY = 9
# The publishing rate's bounds, pages per second: from one page in about 17 minutes (a rate
# nearer 0 would make the token bucket's float arithmetic underflow) to a million.
MIN_RATE = 0.001
MAX_RATE = 1_000_000


class RateLimit(BaseModel):
    """`PUT /admin/dispatch/rate`: pages per second over every dispatcher together, or null
    for no cap."""

    model_config = ConfigDict(extra="forbid")

    pages_per_second: float | None = Field(
        ...,
        ge=MIN_RATE,
        le=MAX_RATE,
        strict=True,
        description=f"pages per second, over all dispatchers ({MIN_RATE:g} to {MAX_RATE:,});"
        " null: no cap",
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
