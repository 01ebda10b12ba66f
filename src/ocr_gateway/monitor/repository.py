"""SQL of the overview: the dispatch state, page counts, and pages recognised per minute."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from ocr_gateway.db.models import DispatchRequest, DispatchState, Page, PageStatus


async def dispatch_state(session: AsyncSession) -> tuple[bool, int, float | None]:
    """Whether a stop is in force, how many starts are open, and the rate limit (None: none)."""
    state = await session.scalar(select(DispatchState).where(DispatchState.id == 1))
    open_starts = int(await session.scalar(select(func.count()).select_from(DispatchRequest)) or 0)
    stopped = bool(state.stopped) if state is not None else False
    rate = state.pages_per_second if state is not None else None
    return stopped, open_starts, rate


async def pages_by_status(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(select(Page.status, func.count()).group_by(Page.status))
    counts = {str(status): 0 for status in PageStatus}
    counts.update({str(status): int(count) for status, count in rows.all()})
    return counts


async def done_per_minute(
    session: AsyncSession, since: dt.datetime
) -> list[tuple[dt.datetime, int]]:
    """Pages that reached `done` per minute since `since`, by their last update (the result's
    store); minutes without any are left out. Pages of deleted jobs no longer count."""
    rows = await session.execute(
        text(
            f"""
            SELECT date_trunc('minute', updated_at) AS minute, count(*) AS pages
              FROM pages
             WHERE status = {PageStatus.DONE.sql} AND updated_at >= :since
             GROUP BY 1 ORDER BY 1
            """
        ),
        {"since": since},
    )
    return [(minute, int(pages)) for minute, pages in rows.all()]
