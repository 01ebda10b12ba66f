"""Queries of the results consumer."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from ocr_gateway.db.models import Page, PageStatus


@dataclass(frozen=True, slots=True)
class StoredPage:
    """A result written to its page: `queued_age_s` is the time since the page's confirm was
    recorded (its `updated_at` while `queued`), None if it was not `queued` (the metrics)."""

    queued_age_s: float | None


async def store_page_result(
    session: AsyncSession,
    *,
    job_id: uuid.UUID,
    page_number: int,
    status: PageStatus,
    text_value: str | None,
    error: str | None,
    boxes: list[dict[str, Any]] | None,
    tables: list[dict[str, Any]] | None = None,
) -> StoredPage | None:
    """Write a result unless the page is already done or cancelled; None if it did not change.

    `tables` is written only when the result carries them: a page whose tables were read at
    render time keeps them."""
    values: dict[str, Any] = {"tables": tables} if tables is not None else {}
    # A subquery in RETURNING reads the statement's snapshot: the row as it was before.
    before = aliased(Page)
    queued_age = (
        select(func.extract("epoch", func.clock_timestamp() - before.updated_at))
        .where(before.id == Page.id, before.status == PageStatus.QUEUED)
        .scalar_subquery()
    )
    changed = await session.execute(
        update(Page)
        .where(
            Page.job_id == job_id,
            Page.page_number == page_number,
            Page.status.not_in((PageStatus.DONE, PageStatus.CANCELLED)),
        )
        .values(
            status=status,
            text=text_value,
            error=error,
            boxes=boxes,
            lease_until=None,
            updated_at=func.now(),
            **values,
        )
        .returning(Page.id, queued_age)
    )
    row = changed.first()
    if row is None:
        return None
    return StoredPage(None if row[1] is None else float(row[1]))
