"""Queries of the exports: a job's pages in page order, a batch at a time.

Functions take an `AsyncSession` inside a transaction the caller owns, and return plain values.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncSession

from ocr_gateway.db.models import Page


async def page_batch(
    session: AsyncSession, job_id: uuid.UUID, *, after: int, limit: int
) -> Sequence[Row[int, str, str | None, list[dict[str, Any]] | None]]:
    """Up to `limit` pages after page `after`: number, status, text and stored boxes."""
    rows = await session.execute(
        select(Page.page_number, Page.status, Page.text, Page.boxes)
        .where(Page.job_id == job_id, Page.page_number > after)
        .order_by(Page.page_number)
        .limit(limit)
    )
    return rows.all()


async def page_texts(
    session: AsyncSession, job_id: uuid.UUID, *, after: int, limit: int
) -> Sequence[Row[int, str | None]]:
    """Up to `limit` pages after page `after`: number and text only (the txt result)."""
    rows = await session.execute(
        select(Page.page_number, Page.text)
        .where(Page.job_id == job_id, Page.page_number > after)
        .order_by(Page.page_number)
        .limit(limit)
    )
    return rows.all()
