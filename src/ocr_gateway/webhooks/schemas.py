"""Response models of the operator's webhook routes."""

from __future__ import annotations

import datetime as dt
import uuid

from pydantic import BaseModel, ConfigDict


class DeliveryView(BaseModel):
    """A webhook delivery: where it goes, what it tells, how its attempts went. `attempts`
    counts attempts started; `last_status_code` and `last_error` are the latest one's."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    webhook_id: str
    tenant: str
    job_id: uuid.UUID
    event_type: str
    url: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: dt.datetime
    next_attempt_at: dt.datetime
    updated_at: dt.datetime


class DeliveryList(BaseModel):
    items: list[DeliveryView]
    next_cursor: str | None
    limit: int
