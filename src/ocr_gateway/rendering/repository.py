"""Queries of rendering: page rows for rendered PNGs, and the render leases that let another
process resume a render whose owner died."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from ocr_gateway.db.models import Job, JobStatus, Page, PageStatus, sql_status


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
                f"""
                UPDATE jobs j
                   SET render_lease_until = now() + make_interval(secs => :lease),
                       render_attempts = j.render_attempts + 1,
                       updated_at = now()
                  FROM (SELECT job_id FROM jobs
                         WHERE status IN ({sql_status(JobStatus.PENDING, JobStatus.QUEUED)})
                           AND error IS NULL
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
    sizes: Mapping[int, int] | None = None,
) -> bool:
    """Insert page rows for rendered PNGs and renew the render lease; False if the job is gone.

    `sizes` gives each PNG's bytes by page number: the pages newly recorded add theirs to the
    job's `stored_bytes` (a page rendered again after a resume is not counted twice).
    Pages rendered for a cancelled job (its render ran in another process) are recorded as
    cancelled, so that nothing ever publishes them. Pages take their job's tenant and priority
    (a task's pages are claimed first, from `ix_pages_priority_pending`).
    """
    job = (
        await session.execute(
            select(Job.status, Job.tenant, Job.priority)
            .where(Job.job_id == job_id)
            .with_for_update()
        )
    ).first()
    if job is None:
        return False
    page_status = PageStatus.CANCELLED if job.status == JobStatus.CANCELLED else PageStatus.PENDING
    added_bytes = 0
    if pages:
        inserted = await session.scalars(
            pg_insert(Page)
            .values(
                [
                    {
                        "job_id": job_id,
                        "tenant": job.tenant,
                        "priority": job.priority,
                        "page_number": n,
                        "path": path,
                        "status": page_status,
                    }
                    for n, path in pages
                ]
            )
            .on_conflict_do_nothing(index_elements=["job_id", "page_number"])
            .returning(Page.page_number)
        )
        if sizes:
            added_bytes = sum(sizes.get(n, 0) for n in inserted)
    await session.execute(
        update(Job)
        .where(Job.job_id == job_id)
        .values(
            rendered_pages=select(func.count())
            .select_from(Page)
            .where(Page.job_id == job_id)
            .scalar_subquery(),
            render_lease_until=func.now() + dt.timedelta(seconds=render_lease_s),
            stored_bytes=Job.stored_bytes + added_bytes,
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
