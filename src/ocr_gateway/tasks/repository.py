"""Queries of tasks: a job made a task, the stop it is ordered against, a task found."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ocr_gateway.db.models import DispatchState, Job


async def mark_task(
    session: AsyncSession,
    job_id: uuid.UUID,
    *,
    frames: Sequence[int],
    as_list: bool,
    priority: int,
) -> None:
    """The new job is a task: its priority, its images' frame counts, and its result's shape."""
    await session.execute(
        update(Job)
        .where(Job.job_id == job_id)
        .values(priority=priority, task_frames=list(frames), task_list=as_list)
    )


async def stopped_for_share(session: AsyncSession) -> bool:
    """Whether an operator's stop is in force, holding it until this transaction ends: a stop
    (which updates the row, then clears every start) waits for this transaction, and so clears
    a start it adds; a stop that came first is seen here."""
    stopped = await session.scalar(
        select(DispatchState.stopped).where(DispatchState.id == 1).with_for_update(read=True)
    )
    return bool(stopped)


async def get_task(session: AsyncSession, job_id: uuid.UUID, *, tenant: str | None) -> Job | None:
    """The job if it is a task (and of `tenant`, when one is given)."""
    stmt = select(Job).where(Job.job_id == job_id, Job.task_frames.is_not(None))
    if tenant is not None:
        stmt = stmt.where(Job.tenant == tenant)
    return await session.scalar(stmt)
