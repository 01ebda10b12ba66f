"""Queries of the job and page domain: jobs, their pages, counters and deletes.

Functions take an `AsyncSession` inside a transaction the caller owns, and return plain values.
The queries that find jobs for a client take `tenant`: with one, another tenant's job is not
found at all (the client routes answer 404, as for a job that does not exist); None is the
operator's view of every tenant.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

from sqlalchemy import Select, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from ocr_gateway.db.models import (
    DEDUP_LIVE_WHERE,
    CallbackEvents,
    Job,
    JobStatus,
    Page,
    PageStatus,
    TextLayer,
    sql_status,
)


async def create_job(
    session: AsyncSession,
    *,
    job_id: uuid.UUID,
    tenant: str,
    filename: str,
    media_type: str,
    total_page_number: int,
    render_lease_s: float,
    callback_url: str | None = None,
    callback_events: CallbackEvents = CallbackEvents.JOB,
    dedup_key: bytes | None = None,
    text_layer: TextLayer = TextLayer.OFF,
    priority: int = 0,
) -> bool:
    """Insert a pending job whose rendering this process owns for `render_lease_s`.

    False, and nothing inserted, when the tenant already has a live job (neither failed nor
    cancelled) with the same `dedup_key`: the insert itself asks `uq_jobs_tenant_dedup`
    (ON CONFLICT DO NOTHING), so two identical uploads at once never both insert. A job
    without a key always inserts.
    """
    inserted = await session.scalar(
        pg_insert(Job)
        .values(
            job_id=job_id,
            tenant=tenant,
            callback_url=callback_url,
            callback_events=callback_events,
            filename=filename,
            media_type=media_type,
            total_page_number=total_page_number,
            status=JobStatus.PENDING,
            render_attempts=1,
            render_lease_until=func.now() + dt.timedelta(seconds=render_lease_s),
            dedup_key=dedup_key,
            text_layer=text_layer,
            priority=priority,
        )
        .on_conflict_do_nothing(
            index_elements=["tenant", "dedup_key"], index_where=text(DEDUP_LIVE_WHERE)
        )
        .returning(Job.job_id)
    )
    return inserted is not None


async def find_live_duplicate(session: AsyncSession, tenant: str, dedup_key: bytes) -> Job | None:
    """The tenant's live job (neither failed nor cancelled) with `dedup_key`, if any."""
    return await session.scalar(
        select(Job).where(
            Job.tenant == tenant,
            Job.dedup_key == dedup_key,
            Job.status.not_in((JobStatus.FAILED, JobStatus.CANCELLED)),
        )
    )


def _of_tenant(stmt: Select[Job], tenant: str | None) -> Select[Job]:
    return stmt if tenant is None else stmt.where(Job.tenant == tenant)


async def get_job(
    session: AsyncSession, job_id: uuid.UUID, *, tenant: str | None = None
) -> Job | None:
    """The job, if it exists (and belongs to `tenant`, when one is given)."""
    if tenant is None:
        return await session.get(Job, job_id)
    return await session.scalar(_of_tenant(select(Job).where(Job.job_id == job_id), tenant))


async def get_job_pages(session: AsyncSession, job_id: uuid.UUID) -> Sequence[Page]:
    rows = await session.scalars(
        select(Page).where(Page.job_id == job_id).order_by(Page.page_number)
    )
    return rows.all()


async def get_page(session: AsyncSession, job_id: uuid.UUID, page_number: int) -> Page | None:
    return await session.scalar(
        select(Page).where(Page.job_id == job_id, Page.page_number == page_number)
    )


async def list_open_jobs(
    session: AsyncSession,
    *,
    limit: int,
    after: tuple[dt.datetime, uuid.UUID] | None = None,
    offset: int = 0,
    tenant: str | None = None,
) -> Sequence[Job]:
    """Jobs not completed (of `tenant`, or of all), newest first; keyset pagination when
    `after` is given."""
    stmt = _of_tenant(select(Job).where(Job.status != JobStatus.COMPLETED), tenant)
    if after is not None:
        created_at, job_id = after
        stmt = stmt.where(func.row(Job.created_at, Job.job_id) < func.row(created_at, job_id))
    stmt = stmt.order_by(Job.created_at.desc(), Job.job_id.desc()).limit(limit)
    if offset:
        stmt = stmt.offset(offset)
    return (await session.scalars(stmt)).all()


async def lock_job(
    session: AsyncSession, job_id: uuid.UUID, *, tenant: str | None = None
) -> Job | None:
    """Lock the job row (if it belongs to `tenant`, when one is given); every change to its
    counters happens under this lock."""
    return await session.scalar(
        _of_tenant(select(Job).where(Job.job_id == job_id), tenant).with_for_update()
    )


async def refresh_job_progress(session: AsyncSession, job_id: uuid.UUID) -> str | None:
    """Recount done and failed pages and derive the job status (caller holds `lock_job`)."""
    row = (
        await session.execute(
            text(
                f"""
                UPDATE jobs j
                   SET completed_pages = c.done,
                       failed_pages = c.failed,
                       updated_at = now(),
                       status = CASE
                         WHEN j.status = {JobStatus.CANCELLED.sql} THEN j.status
                         WHEN j.error IS NOT NULL THEN {JobStatus.FAILED.sql}
                         WHEN j.rendered_pages + cardinality(j.excluded_pages) < j.total_page_number
                              AND j.render_lease_until IS NOT NULL THEN j.status
                         WHEN c.done = j.total_page_number - cardinality(j.excluded_pages)
                              THEN {JobStatus.COMPLETED.sql}
                         WHEN c.done + c.failed
                              = j.total_page_number - cardinality(j.excluded_pages)
                              THEN {JobStatus.FAILED.sql}
                         WHEN j.status IN ({sql_status(JobStatus.COMPLETED, JobStatus.FAILED)})
                              THEN {JobStatus.QUEUED.sql}
                         ELSE j.status
                       END
                  FROM (SELECT count(*) FILTER (WHERE status = {PageStatus.DONE.sql}) AS done,
                               count(*) FILTER (WHERE status = {PageStatus.FAILED.sql}) AS failed
                          FROM pages WHERE job_id = :job_id) c
                 WHERE j.job_id = :job_id
             RETURNING j.status
                """
            ),
            {"job_id": job_id},
        )
    ).first()
    return None if row is None else str(row.status)


async def fail_job(session: AsyncSession, job_id: uuid.UUID, reason: str) -> bool:
    """A job whose render failed: it and its pages still waiting for a start are failed, so no
    start ever publishes them (the pages already rendered keep their PNGs for inspection). A
    cancelled job stays cancelled; False then, or if the job is gone."""
    failed = await session.scalar(
        update(Job)
        .where(Job.job_id == job_id, Job.status != JobStatus.CANCELLED)
        .values(
            status=JobStatus.FAILED, error=reason, render_lease_until=None, updated_at=func.now()
        )
        .returning(Job.job_id)
    )
    if failed is None:
        return False
    await session.execute(
        update(Page)
        .where(Page.job_id == job_id, Page.status == PageStatus.PENDING)
        .values(status=PageStatus.FAILED, error="the job's rendering failed", updated_at=func.now())
    )
    return True


async def delete_page(session: AsyncSession, job_id: uuid.UUID, page_number: int) -> bool:
    """Remove a page row and record its number in `excluded_pages`; False if there was none
    (its PNG's key is `storage.keys.page_key`)."""
    deleted = await session.scalar(
        delete(Page)
        .where(Page.job_id == job_id, Page.page_number == page_number)
        .returning(Page.id)
    )
    if deleted is None:
        return False
    await session.execute(
        update(Job)
        .where(Job.job_id == job_id)
        .values(
            excluded_pages=func.array_append(Job.excluded_pages, page_number),
            updated_at=func.now(),
        )
    )
    return True


async def delete_job(session: AsyncSession, job_id: uuid.UUID) -> bool:
    deleted = await session.scalar(delete(Job).where(Job.job_id == job_id).returning(Job.job_id))
    return deleted is not None


async def delete_all_jobs(session: AsyncSession) -> list[uuid.UUID]:
    """Delete every job (pages and dispatch requests cascade); returns their ids."""
    return list(await session.scalars(delete(Job).returning(Job.job_id)))


async def all_job_ids(session: AsyncSession) -> set[uuid.UUID]:
    return set(await session.scalars(select(Job.job_id)))


async def list_jobs(
    session: AsyncSession,
    *,
    limit: int,
    after: tuple[dt.datetime, uuid.UUID] | None = None,
    status: JobStatus | None = None,
    tenant: str | None = None,
) -> Sequence[Job]:
    """Every job of `tenant` (of all when None; those in `status`), newest first; keyset
    pagination when `after` is given."""
    stmt = _of_tenant(select(Job), tenant)
    if status is not None:
        stmt = stmt.where(Job.status == status)
    if after is not None:
        created_at, job_id = after
        stmt = stmt.where(func.row(Job.created_at, Job.job_id) < func.row(created_at, job_id))
    return (
        await session.scalars(stmt.order_by(Job.created_at.desc(), Job.job_id.desc()).limit(limit))
    ).all()


async def cancel_job(session: AsyncSession, job_id: uuid.UUID) -> None:
    """The job becomes cancelled (caller holds `lock_job`); its render lease is released, so no
    other process resumes its rendering."""
    await session.execute(
        update(Job)
        .where(Job.job_id == job_id)
        .values(status=JobStatus.CANCELLED, render_lease_until=None, updated_at=func.now())
    )


async def cancel_unfinished_pages(session: AsyncSession, job_id: uuid.UUID) -> int:
    """The job's pages that are waiting (pending) or out with the workers (queued) become
    cancelled: no claim takes them any more, and a late result for one is dropped. Pages being
    published are left to their publish, which settles them first."""
    result = await session.execute(
        update(Page)
        .where(Page.job_id == job_id, Page.status.in_((PageStatus.PENDING, PageStatus.QUEUED)))
        .values(status=PageStatus.CANCELLED, lease_until=None, updated_at=func.now())
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def count_pages(session: AsyncSession, job_id: uuid.UUID, status: PageStatus) -> int:
    return int(
        await session.scalar(
            select(func.count())
            .select_from(Page)
            .where(Page.job_id == job_id, Page.status == status)
        )
        or 0
    )


async def set_job_priority(session: AsyncSession, job_id: uuid.UUID, priority: int) -> int:
    """Give the job `priority` and its pending pages with it, in one statement; returns the
    pending pages changed. Pages already claimed or in the broker keep the priority they were
    published with. The caller checked that the job exists and is no task."""
    changed = await session.scalar(
        text(
            f"""
            WITH job AS (
                UPDATE jobs SET priority = :priority, updated_at = now()
                 WHERE job_id = :job_id
             RETURNING job_id),
            pending AS (
                UPDATE pages SET priority = :priority, updated_at = now()
                 WHERE job_id = (SELECT job_id FROM job)
                   AND status = {PageStatus.PENDING.sql}
             RETURNING 1)
            SELECT count(*) FROM pending
            """
        ),
        {"job_id": job_id, "priority": priority},
    )
    return int(changed or 0)
