"""SQL of the overview: the dispatch state, page counts, and pages recognised per minute."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ocr_gateway.db.models import (
    DispatchRequest,
    DispatchState,
    PageStatus,
    WorkerThroughput,
)
from ocr_gateway.metrics.repository import count_pages_by_status


async def dispatch_state(session: AsyncSession) -> tuple[bool, int, float | None]:
    """Whether a stop is in force, how many starts are open, and the rate limit (None: none)."""
    state = await session.scalar(select(DispatchState).where(DispatchState.id == 1))
    open_starts = int(await session.scalar(select(func.count()).select_from(DispatchRequest)) or 0)
    stopped = bool(state.stopped) if state is not None else False
    rate = state.pages_per_second if state is not None else None
    return stopped, open_starts, rate


async def pages_by_status(session: AsyncSession) -> dict[str, int]:
    """Every page status with its count, 0 included (the metrics gauge's own query, read
    fresh: the overview shows the pages as they are now, the gauge at most 5 s old)."""
    counts = {str(status): 0 for status in PageStatus}
    counts.update(await count_pages_by_status(session))
    return counts


async def done_per_minute(
    session: AsyncSession, since: dt.datetime
) -> list[tuple[dt.datetime, int]]:
    """Pages answered done per minute since `since`, every worker together, from
    `worker_throughput` (its key starts with the minute: a range read, however many pages the
    gateway holds); minutes without any are left out."""
    rows = await session.execute(
        select(WorkerThroughput.minute, func.sum(WorkerThroughput.done_pages))
        .where(WorkerThroughput.minute >= since)
        .group_by(WorkerThroughput.minute)
        .order_by(WorkerThroughput.minute)
    )
    return [(minute, int(pages)) for minute, pages in rows.all()]


async def add_worker_counts(
    session: AsyncSession, counts: Mapping[tuple[dt.datetime, str, str], int]
) -> None:
    """Add (minute, worker, status) → pages to `worker_throughput`, one upsert for them all."""
    merged: dict[tuple[dt.datetime, str], list[int]] = {}
    for (minute, worker, status), pages in counts.items():
        row = merged.setdefault((minute, worker), [0, 0])
        row[0 if status == PageStatus.DONE else 1] += pages
    statement = insert(WorkerThroughput).values(
        [
            {"minute": minute, "worker": worker, "done_pages": done, "failed_pages": failed}
            for (minute, worker), (done, failed) in sorted(merged.items())
        ]
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[WorkerThroughput.minute, WorkerThroughput.worker],
            set_={
                "done_pages": WorkerThroughput.done_pages + statement.excluded.done_pages,
                "failed_pages": WorkerThroughput.failed_pages + statement.excluded.failed_pages,
            },
        )
    )


async def worker_rates(
    session: AsyncSession, since: dt.datetime
) -> list[tuple[str, int, int, dt.datetime]]:
    """Each worker seen since `since`: its done and failed pages since then, and its last
    minute, most pages first."""
    rows = await session.execute(
        select(
            WorkerThroughput.worker,
            func.sum(WorkerThroughput.done_pages),
            func.sum(WorkerThroughput.failed_pages),
            func.max(WorkerThroughput.minute),
        )
        .where(WorkerThroughput.minute >= since)
        .group_by(WorkerThroughput.worker)
        .order_by(func.sum(WorkerThroughput.done_pages).desc(), WorkerThroughput.worker)
    )
    return [(w, int(d), int(f), last) for w, d, f, last in rows.all()]
