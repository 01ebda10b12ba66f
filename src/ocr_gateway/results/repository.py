"""Queries of the results consumer."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncSession

from ocr_gateway.db.models import Page, PageStatus


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
) -> bool:
    """Write a result unless the page is already done or cancelled; True if the page changed.

    `tables` is written only when the result carries them: a page whose tables were read at
    render time keeps them."""
    values: dict[str, Any] = {"tables": tables} if tables is not None else {}
    changed = await session.scalar(
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
        .returning(Page.id)
    )
    return changed is not None
