"""The metrics' one query: pages by status, for the `ocr_gateway_pages` gauge."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ocr_gateway.db.models import Page


async def count_pages_by_status(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(select(Page.status, func.count()).group_by(Page.status))
    return {str(status): int(count) for status, count in rows.tuples()}
