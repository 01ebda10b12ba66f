"""Every SQL statement the gateway runs, grouped by what it serves.

Functions take an `AsyncSession` inside a transaction the caller owns, and return plain values.
Statements that touch many rows work in sets (`= ANY(:ids)`), never one row per statement.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, or_, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import BigInteger

from ocr_gateway.db.models import DispatchRequest, Job, JobStatus, Page, PageStatus

NOTIFY_CHANNEL = "ocr_gateway_dispatch"

# ---------------------------------------------------------------- jobs and rendering


async def create_job(
    session: AsyncSession,
    *,
    job_id: uuid.UUID,
    filename: str,
    media_type: str,
    total_page_number: int,
    render_lease_s: float,
) -> None:
    """Insert a pending job whose rendering this process owns for `render_lease_s`."""
    await session.execute(
        insert(Job).values(
            job_id=job_id,
            filename=filename,
            media_type=media_type,
            total_page_number=total_page_number,
            status=JobStatus.PENDING,
            render_attempts=1,
            render_lease_until=func.now() + dt.timedelta(seconds=render_lease_s),
        )
    )


@dataclass(frozen=True, slots=True)
class RenderClaim:
    job_id: uuid.UUID
    media_type: str
    total_page_number: int
    render_attempts: int
    done_pages: frozenset[int]


async def claim_unfinished_renders(
    session: AsyncSession, *, render_lease_s: float, limit: int = 16
) -> list[RenderClaim]:
    """Take over renders whose owner stopped renewing its lease (a killed or restarted process)."""
    rows = (
        await session.execute(
            text(
                """
                UPDATE jobs j
                   SET render_lease_until = now() + make_interval(secs => :lease),
                       render_attempts = j.render_attempts + 1,
                       updated_at = now()
                  FROM (SELECT job_id FROM jobs
                         WHERE status IN ('pending', 'queued') AND error IS NULL
                           AND render_lease_until IS NOT NULL
                           AND render_lease_until < now()
                         ORDER BY created_at
                         LIMIT :limit
                           FOR UPDATE SKIP LOCKED) c
                 WHERE j.job_id = c.job_id
             RETURNING j.job_id, j.media_type, j.total_page_number, j.render_attempts,
                       j.excluded_pages
                """
            ),
            {"lease": render_lease_s, "limit": limit},
        )
    ).all()
    claims = []
    for row in rows:
        existing = await rendered_page_numbers(session, row.job_id)
        claims.append(
            RenderClaim(
                job_id=row.job_id,
                media_type=row.media_type,
                total_page_number=row.total_page_number,
                render_attempts=row.render_attempts,
                done_pages=frozenset(existing | set(row.excluded_pages or ())),
            )
        )
    return claims


async def rendered_page_numbers(session: AsyncSession, job_id: uuid.UUID) -> set[int]:
    rows = await session.scalars(select(Page.page_number).where(Page.job_id == job_id))
    return set(rows)


async def record_rendered_pages(
    session: AsyncSession,
    job_id: uuid.UUID,
    pages: Sequence[tuple[int, str]],
    *,
    render_lease_s: float,
) -> bool:
    """Insert page rows for rendered PNGs and renew the render lease; False if the job is gone."""
    locked = await session.scalar(select(Job.job_id).where(Job.job_id == job_id).with_for_update())
    if locked is None:
        return False
    if pages:
        await session.execute(
            pg_insert(Page)
            .values(
                [
                    {"job_id": job_id, "page_number": n, "path": path, "status": PageStatus.PENDING}
                    for n, path in pages
                ]
            )
            .on_conflict_do_nothing(index_elements=["job_id", "page_number"])
        )
    await session.execute(
        update(Job)
        .where(Job.job_id == job_id)
        .values(
            rendered_pages=select(func.count())
            .select_from(Page)
            .where(Page.job_id == job_id)
            .scalar_subquery(),
            render_lease_until=func.now() + dt.timedelta(seconds=render_lease_s),
            updated_at=func.now(),
        )
    )
    return True


async def finish_render(session: AsyncSession, job_id: uuid.UUID) -> None:
    """Release the render lease: every page is on disk and in the table."""
    await session.execute(
        update(Job)
        .where(Job.job_id == job_id)
        .values(render_lease_until=None, updated_at=func.now())
    )


async def fail_job(session: AsyncSession, job_id: uuid.UUID, reason: str) -> None:
    """A job whose render failed: it and its pages still waiting for a start are failed, so no
    start ever publishes them (the pages already rendered keep their PNGs for inspection)."""
    await session.execute(
        update(Job)
        .where(Job.job_id == job_id)
        .values(
            status=JobStatus.FAILED, error=reason, render_lease_until=None, updated_at=func.now()
        )
    )
    await session.execute(
        update(Page)
        .where(Page.job_id == job_id, Page.status == PageStatus.PENDING)
        .values(status=PageStatus.FAILED, error="the job's rendering failed", updated_at=func.now())
    )


async def get_job(session: AsyncSession, job_id: uuid.UUID) -> Job | None:
    return await session.get(Job, job_id)


async def get_job_pages(session: AsyncSession, job_id: uuid.UUID) -> Sequence[Page]:
    rows = await session.scalars(
        select(Page).where(Page.job_id == job_id).order_by(Page.page_number)
    )
    return rows.all()


async def list_open_jobs(
    session: AsyncSession,
    *,
    limit: int,
    after: tuple[dt.datetime, uuid.UUID] | None = None,
    offset: int = 0,
) -> Sequence[Job]:
    """Jobs not completed, newest first; keyset pagination when `after` is given."""
    stmt = select(Job).where(Job.status != JobStatus.COMPLETED)
    if after is not None:
        created_at, job_id = after
        stmt = stmt.where(func.row(Job.created_at, Job.job_id) < func.row(created_at, job_id))
    stmt = stmt.order_by(Job.created_at.desc(), Job.job_id.desc()).limit(limit)
    if offset:
        stmt = stmt.offset(offset)
    return (await session.scalars(stmt)).all()


async def lock_job(session: AsyncSession, job_id: uuid.UUID) -> Job | None:
    """Lock the job row; every change to its counters happens under this lock."""
    return await session.scalar(select(Job).where(Job.job_id == job_id).with_for_update())


async def refresh_job_progress(session: AsyncSession, job_id: uuid.UUID) -> str | None:
    """Recount done and failed pages and derive the job status (caller holds `lock_job`)."""
    row = (
        await session.execute(
            text(
                """
                UPDATE jobs j
                   SET completed_pages = c.done,
                       failed_pages = c.failed,
                       updated_at = now(),
                       status = CASE
                         WHEN j.error IS NOT NULL THEN 'failed'
                         WHEN j.rendered_pages + cardinality(j.excluded_pages) < j.total_page_number
                              AND j.render_lease_until IS NOT NULL THEN j.status
                         WHEN c.done = j.total_page_number - cardinality(j.excluded_pages)
                              THEN 'completed'
                         WHEN c.done + c.failed
                              = j.total_page_number - cardinality(j.excluded_pages) THEN 'failed'
                         WHEN j.status IN ('completed', 'failed') THEN 'queued'
                         ELSE j.status
                       END
                  FROM (SELECT count(*) FILTER (WHERE status = 'done') AS done,
                               count(*) FILTER (WHERE status = 'failed') AS failed
                          FROM pages WHERE job_id = :job_id) c
                 WHERE j.job_id = :job_id
             RETURNING j.status
                """
            ),
            {"job_id": job_id},
        )
    ).first()
    return None if row is None else str(row.status)


async def delete_page(session: AsyncSession, job_id: uuid.UUID, page_number: int) -> str | None:
    """Remove a page row and record its number in `excluded_pages`; returns its PNG path."""
    path = await session.scalar(
        delete(Page)
        .where(Page.job_id == job_id, Page.page_number == page_number)
        .returning(Page.path)
    )
    if path is None:
        return None
    await session.execute(
        update(Job)
        .where(Job.job_id == job_id)
        .values(
            excluded_pages=func.array_append(Job.excluded_pages, page_number),
            updated_at=func.now(),
        )
    )
    return str(path)


async def delete_job(session: AsyncSession, job_id: uuid.UUID) -> bool:
    deleted = await session.scalar(delete(Job).where(Job.job_id == job_id).returning(Job.job_id))
    return deleted is not None


async def delete_all_jobs(session: AsyncSession) -> list[uuid.UUID]:
    """Delete every job (pages and dispatch requests cascade); returns their ids."""
    return list(await session.scalars(delete(Job).returning(Job.job_id)))


async def all_job_ids(session: AsyncSession) -> set[uuid.UUID]:
    return set(await session.scalars(select(Job.job_id)))


# ---------------------------------------------------------------- dispatch


async def count_startable_pages(session: AsyncSession, job_id: uuid.UUID | None = None) -> int:
    """Pending pages that a start would publish (an index-only count on `ix_pages_pending`)."""
    stmt = select(func.count()).select_from(Page).where(Page.status == PageStatus.PENDING)
    if job_id is not None:
        stmt = stmt.where(Page.job_id == job_id)
    return int(await session.scalar(stmt) or 0)


async def get_page(session: AsyncSession, job_id: uuid.UUID, page_number: int) -> Page | None:
    return await session.scalar(
        select(Page).where(Page.job_id == job_id, Page.page_number == page_number)
    )


async def reset_failed_page(session: AsyncSession, page_id: int) -> None:
    """A failed page that an operator starts again goes back to pending."""
    await session.execute(
        update(Page)
        .where(Page.id == page_id, Page.status == PageStatus.FAILED)
        .values(status=PageStatus.PENDING, error=None, updated_at=func.now())
    )


async def add_dispatch_request(
    session: AsyncSession, job_id: uuid.UUID | None = None, page_number: int | None = None
) -> None:
    await session.execute(insert(DispatchRequest).values(job_id=job_id, page_number=page_number))


async def clear_dispatch_requests(session: AsyncSession) -> int:
    """A stop: forget every start, so no process claims another page."""
    result = await session.execute(delete(DispatchRequest))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def has_dispatch_requests(session: AsyncSession) -> bool:
    return bool(await session.scalar(select(func.count()).select_from(DispatchRequest)))


async def publishing_in_progress(session: AsyncSession) -> bool:
    """A start is in force, or some process still has pages mid-publish."""
    requested = select(DispatchRequest.id).exists()
    in_flight = select(Page.id).where(Page.status == PageStatus.PUBLISHING).exists()
    return bool(await session.scalar(select(or_(requested, in_flight))))


async def retire_satisfied_requests(session: AsyncSession) -> int:
    """Delete starts that have no page left to publish (nothing pending or in flight)."""
    result = await session.execute(
        text(
            """
            DELETE FROM dispatch_requests r
             WHERE NOT EXISTS (
                   SELECT 1 FROM pages p
                    WHERE p.status IN ('pending', 'publishing')
                      AND (r.job_id IS NULL
                           OR (p.job_id = r.job_id
                               AND (r.page_number IS NULL OR p.page_number = r.page_number))))
               AND NOT EXISTS (
                   SELECT 1 FROM jobs j
                    WHERE j.error IS NULL AND j.render_lease_until IS NOT NULL
                      AND (r.job_id IS NULL OR j.job_id = r.job_id))
            """
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class ClaimedPage:
    id: int
    job_id: uuid.UUID
    page_number: int
    path: str


async def claim_pages(session: AsyncSession, *, limit: int, lease_s: float) -> list[ClaimedPage]:
    """Move up to `limit` requested pending pages to `publishing` under a lease (SKIP LOCKED)."""
    rows = (
        await session.execute(
            text(
                """
                UPDATE pages p
                   SET status = 'publishing',
                       lease_until = now() + make_interval(secs => :lease),
                       publish_attempts = p.publish_attempts + 1,
                       updated_at = now()
                  FROM (SELECT pp.id FROM pages pp
                         WHERE pp.status = 'pending'
                           AND EXISTS (SELECT 1 FROM dispatch_requests r
                                        WHERE r.job_id IS NULL
                                           OR (r.job_id = pp.job_id
                                               AND (r.page_number IS NULL
                                                    OR r.page_number = pp.page_number)))
                         ORDER BY pp.id
                         LIMIT :limit
                           FOR UPDATE SKIP LOCKED) c
                 WHERE p.id = c.id
             RETURNING p.id, p.job_id, p.page_number, p.path
                """
            ),
            {"lease": lease_s, "limit": limit},
        )
    ).all()
    return [ClaimedPage(r.id, r.job_id, r.page_number, r.path) for r in rows]


_IDS = bindparam("ids", type_=ARRAY(BigInteger))


async def mark_pages_queued(session: AsyncSession, page_ids: Sequence[int]) -> int:
    """Record broker confirms: publishing → queued, and their jobs pending → queued."""
    if not page_ids:
        return 0
    result = await session.execute(
        text(
            """
            WITH q AS (
                UPDATE pages SET status = 'queued', lease_until = NULL, updated_at = now()
                 WHERE id = ANY(:ids) AND status = 'publishing'
             RETURNING job_id)
            UPDATE jobs SET status = 'queued', updated_at = now()
             WHERE job_id IN (SELECT DISTINCT job_id FROM q) AND status = 'pending'
            """
        ).bindparams(_IDS),
        {"ids": list(page_ids)},
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def release_pages(session: AsyncSession, page_ids: Sequence[int]) -> int:
    """Unconfirmed pages go back to pending, ready for a later start."""
    if not page_ids:
        return 0
    result = await session.execute(
        text(
            """
            UPDATE pages SET status = 'pending', lease_until = NULL, updated_at = now()
             WHERE id = ANY(:ids) AND status = 'publishing'
            """
        ).bindparams(_IDS),
        {"ids": list(page_ids)},
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def expire_publish_leases(session: AsyncSession) -> int:
    """Pages claimed by a process that died before confirming go back to pending."""
    result = await session.execute(
        text(
            """
            UPDATE pages SET status = 'pending', lease_until = NULL, updated_at = now()
             WHERE status = 'publishing' AND lease_until < now()
            """
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def count_publishing(session: AsyncSession) -> int:
    return int(
        await session.scalar(
            select(func.count()).select_from(Page).where(Page.status == PageStatus.PUBLISHING)
        )
        or 0
    )


async def requeue_queued_pages(session: AsyncSession) -> int:
    """After a purge of the pages queue: queued pages are no longer in it, so back to pending."""
    result = await session.execute(
        update(Page)
        .where(Page.status == PageStatus.QUEUED)
        .values(status=PageStatus.PENDING, updated_at=func.now())
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# ---------------------------------------------------------------- results


async def store_page_result(
    session: AsyncSession,
    *,
    job_id: uuid.UUID,
    page_number: int,
    status: PageStatus,
    text_value: str | None,
    error: str | None,
    boxes: list[dict[str, Any]] | None,
) -> bool:
    """Write a result unless the page is already done; True if the page changed."""
    changed = await session.scalar(
        update(Page)
        .where(
            Page.job_id == job_id,
            Page.page_number == page_number,
            Page.status != PageStatus.DONE,
        )
        .values(
            status=status,
            text=text_value,
            error=error,
            boxes=boxes,
            lease_until=None,
            updated_at=func.now(),
        )
        .returning(Page.id)
    )
    return changed is not None


_JOB_IDS = bindparam("job_ids", type_=ARRAY(UUID(as_uuid=True)))


async def renew_render_leases(
    session: AsyncSession, job_ids: Sequence[uuid.UUID], *, render_lease_s: float
) -> None:
    """Heartbeat for the renders this process runs."""
    await session.execute(
        text(
            """
            UPDATE jobs SET render_lease_until = now() + make_interval(secs => :lease)
             WHERE job_id = ANY(:job_ids) AND render_lease_until IS NOT NULL
            """
        ).bindparams(_JOB_IDS),
        {"job_ids": list(job_ids), "lease": render_lease_s},
    )


async def release_render_leases(session: AsyncSession, job_ids: Sequence[uuid.UUID]) -> None:
    """Expire the leases at once on shutdown, so the next process resumes these renders."""
    await session.execute(
        text(
            """
            UPDATE jobs SET render_lease_until = now() - interval '1 second',
                            render_attempts = GREATEST(render_attempts - 1, 0)
             WHERE job_id = ANY(:job_ids) AND render_lease_until IS NOT NULL
            """
        ).bindparams(_JOB_IDS),
        {"job_ids": list(job_ids)},
    )


async def renew_publish_leases(
    session: AsyncSession, page_ids: Sequence[int], *, lease_s: float
) -> None:
    """Heartbeat for pages this process holds in `publishing`."""
    await session.execute(
        text(
            """
            UPDATE pages SET lease_until = now() + make_interval(secs => :lease)
             WHERE id = ANY(:ids) AND status = 'publishing'
            """
        ).bindparams(_IDS),
        {"ids": list(page_ids), "lease": lease_s},
    )


async def fail_pages(session: AsyncSession, page_ids: Sequence[int], reason: str) -> None:
    """Pages that can never be published (their PNG is gone) fail, and their jobs are recounted."""
    if not page_ids:
        return
    job_ids = (
        await session.scalars(
            text(
                """
                UPDATE pages SET status = 'failed', error = :reason, lease_until = NULL,
                                 updated_at = now()
                 WHERE id = ANY(:ids) AND status = 'publishing'
             RETURNING job_id
                """
            ).bindparams(_IDS),
            {"ids": list(page_ids), "reason": reason},
        )
    ).all()
    for job_id in sorted(set(job_ids)):
        if await lock_job(session, job_id) is not None:
            await refresh_job_progress(session, job_id)


async def notify_dispatchers(session: AsyncSession, payload: str) -> None:
    """Wake every app process's dispatcher when this transaction commits."""
    await session.execute(
        text("SELECT pg_notify(:channel, :payload)"),
        {"channel": NOTIFY_CHANNEL, "payload": payload},
    )


async def ping(session: AsyncSession) -> None:
    await session.execute(text("SELECT 1"))
