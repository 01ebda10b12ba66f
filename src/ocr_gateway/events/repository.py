"""Queries of the event record: append an event (with its NOTIFY), read a job's events by id."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from ocr_gateway.db.models import JobEvent, JobStatus, PageStatus
from ocr_gateway.events.types import EventType, JobEventOut
from ocr_gateway.webhooks import repository as webhooks_repo

NOTIFY_CHANNEL = "ocr_gateway_events"


# One statement: the event, its webhook delivery when the job's callback wants one (the outbox,
# `webhooks.repository.outbox_insert`), and a NOTIFY to the webhook senders when it wrote one.
_RECORD_EVENT = text(
    f"""
    WITH event AS (
    INSERT INTO job_events (job_id, type, page_number, data)
    SELECT j.job_id, :type, :page_number,
           jsonb_build_object(
               'status', j.status,
               'total_page_number', j.total_page_number,
               'completed_pages', j.completed_pages,
               'failed_pages', j.failed_pages,
               'cancelled_pages',
               -- Pages are cancelled only with their job: no page scan per result.
               CASE WHEN j.status = {JobStatus.CANCELLED.sql}
                    THEN (SELECT count(*) FROM pages p
                           WHERE p.job_id = j.job_id
                             AND p.status = {PageStatus.CANCELLED.sql})
                    ELSE 0 END)
      FROM jobs j WHERE j.job_id = :job_id
    RETURNING job_id, type, page_number, data, created_at),
    delivery AS ({webhooks_repo.outbox_insert("event")})
    {webhooks_repo.notify_written("delivery")}
    """
)


async def record_event(
    session: AsyncSession,
    job_id: uuid.UUID,
    event_type: EventType,
    *,
    page_number: int | None = None,
) -> None:
    """Append an event carrying the job's counters as they are in this transaction, and NOTIFY
    the listeners, which PostgreSQL delivers when (and only if) the transaction commits.

    The same statement writes the event's webhook delivery (the outbox), when the job's
    callback wants it: see `webhooks.repository.outbox_insert`.
    """
    await session.execute(
        _RECORD_EVENT,
        {"job_id": job_id, "type": event_type.value, "page_number": page_number},
    )
    await notify(session, job_id)


async def forget_events(session: AsyncSession, job_id: uuid.UUID) -> None:
    """Before a job's `job.deleted`: its earlier events go with it, and that one remains, so
    readers following the job learn of the delete and stop."""
    await session.execute(delete(JobEvent).where(JobEvent.job_id == job_id))


async def notify(session: AsyncSession, job_id: uuid.UUID) -> None:
    await session.execute(
        text("SELECT pg_notify(:channel, :payload)"),
        {"channel": NOTIFY_CHANNEL, "payload": str(job_id)},
    )


async def events_after(
    session: AsyncSession, job_id: uuid.UUID, after: int, limit: int = 500
) -> Sequence[JobEventOut]:
    rows = await session.scalars(
        select(JobEvent)
        .where(JobEvent.job_id == job_id, JobEvent.id > after)
        .order_by(JobEvent.id)
        .limit(limit)
    )
    return [
        JobEventOut.from_row(
            id=row.id,
            type=row.type,
            job_id=row.job_id,
            page_number=row.page_number,
            data=row.data,
            created_at=row.created_at,
        )
        for row in rows
    ]


async def last_event_id(session: AsyncSession, job_id: uuid.UUID) -> int:
    value = await session.scalar(select(func.max(JobEvent.id)).where(JobEvent.job_id == job_id))
    return int(value or 0)


_FINISHING_EVENTS = {
    "completed": EventType.JOB_COMPLETED,
    "failed": EventType.JOB_FAILED,
    "cancelled": EventType.JOB_CANCELLED,
}


async def record_status_change(
    session: AsyncSession, job_id: uuid.UUID, before: str, after: str | None
) -> None:
    """`job.completed`, `job.failed` or `job.cancelled` when the job has just reached it."""
    if after is not None and after != before and after in _FINISHING_EVENTS:
        await record_event(session, job_id, _FINISHING_EVENTS[after])


EVERY_JOB = "*"


async def record_all_deleted(session: AsyncSession) -> None:
    """Before every job is deleted: one `job.deleted` each, and one NOTIFY for all of them."""
    await session.execute(delete(JobEvent))
    await session.execute(
        text(
            """
            INSERT INTO job_events (job_id, type, data)
            SELECT j.job_id, :type,
                   jsonb_build_object(
                       'status', j.status, 'total_page_number', j.total_page_number,
                       'completed_pages', j.completed_pages, 'failed_pages', j.failed_pages)
              FROM jobs j
            """
        ),
        {"type": EventType.JOB_DELETED.value},
    )
    await session.execute(
        text("SELECT pg_notify(:channel, :payload)"),
        {"channel": NOTIFY_CHANNEL, "payload": EVERY_JOB},
    )
