"""Queries of rendering: page rows for rendered PNGs, and the render leases that let another
process resume a render whose owner died."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from ocr_gateway.db.models import (
    Job,
    JobStatus,
    Page,
    PageSource,
    PageStatus,
    TextLayer,
    sql_status,
)


class PageContent(Protocol):
    """What a page read at render time stores on its row (`text_layer.TextLayerPage`)."""

    def columns(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class RecordedPages:
    """What `record_rendered_pages` did: the job's status before it, and the pages it
    recorded `done` from their text layer (each owes a `page.done` event)."""

    status_before: str
    done_pages: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RenderClaim:
    job_id: uuid.UUID
    media_type: str
    total_page_number: int
    render_attempts: int
    done_pages: frozenset[int]
    text_layer: bool = False
    tables: bool = False


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
                       j.excluded_pages, j.text_layer, j.extract_tables
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
                text_layer=row.text_layer == TextLayer.AUTO,
                tables=bool(row.extract_tables),
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
    read_pages: Mapping[int, PageContent] | None = None,
) -> RecordedPages | None:
    """Insert page rows for rendered PNGs and renew the render lease; None if the job is gone.

    `read_pages` are the pages whose content was read at render time (from their text layer):
    they are inserted `done`, with `source` `text_layer` and the values their `columns()` give,
    and never published. The caller records their events and refreshes the job's progress
    (`RecordedPages.done_pages`, under the job's row lock this takes).

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
        return None
    cancelled = job.status == JobStatus.CANCELLED
    page_status = PageStatus.CANCELLED if cancelled else PageStatus.PENDING
    read = {} if cancelled or read_pages is None else dict(read_pages)
    rows: list[dict[str, Any]] = []
    for n, path in pages:
        row: dict[str, Any] = {
            "job_id": job_id,
            "tenant": job.tenant,
            "priority": job.priority,
            "page_number": n,
            "path": path,
            "status": page_status,
            "source": PageSource.OCR,
        }
        if n in read:
            row.update(read[n].columns(), status=PageStatus.DONE, source=PageSource.TEXT_LAYER)
        rows.append(row)
    # One multi-row VALUES needs the same keys in every row: NULL where a page has none.
    keys = {key for row in rows for key in row}
    rows = [{key: row.get(key) for key in keys} for row in rows]
    added_bytes = 0
    done: list[int] = []
    if pages:
        inserted = list(
            await session.scalars(
                pg_insert(Page)
                .values(rows)
                .on_conflict_do_nothing(index_elements=["job_id", "page_number"])
                .returning(Page.page_number)
            )
        )
        done = sorted(n for n in inserted if n in read)
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
    return RecordedPages(str(job.status), done)


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
