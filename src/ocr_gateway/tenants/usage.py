"""Queries of a tenant's usage against its limits: open pages, recent uploads, stored bytes.

Functions take an `AsyncSession` inside a transaction the caller owns, and return plain values.
Each figure is read from an index on `jobs` that starts with the tenant:
- pages pending or in flight: `ix_jobs_tenant_open`, the tenant's pending and queued jobs only;
- uploads in the last minute: `ix_jobs_tenant_created`, a range of its newest entries;
- bytes stored: `ix_jobs_tenant_created` again, every job of the tenant (a row each).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from ocr_gateway.db.models import JobStatus, sql_status

# Every upload, and every file of a batch, is one job: a job's `created_at` is its upload's.
UPLOAD_WINDOW_S = 60


@dataclass(frozen=True, slots=True)
class TenantUsage:
    """A tenant's figures now, and its own limits (None: the settings' default applies)."""

    pending_pages: int
    recent_uploads: int
    stored_bytes: int
    max_pending_pages: int | None = None
    uploads_per_minute: int | None = None
    max_stored_bytes: int | None = None


async def lock_tenant_quota(session: AsyncSession, tenant: str) -> None:
    """Serialise quota checks of one tenant until the transaction ends, so that two uploads
    checked at once cannot both pass on the same remaining room."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"ocr_gateway.tenant_quota:{tenant}"},
    )


async def read_usage(session: AsyncSession, tenant: str) -> TenantUsage:
    """The tenant's figures and its limit overrides, in one statement.

    Pages pending or in flight are the pages of its unfinished jobs that are not done or
    failed yet: a job still being rendered counts the pages it has still to render too.
    """
    row = (
        await session.execute(
            text(
                f"""
                SELECT
                  (SELECT coalesce(sum(greatest(j.total_page_number - j.completed_pages
                                                - j.failed_pages
                                                - cardinality(j.excluded_pages), 0)), 0)
                     FROM jobs j
                    WHERE j.tenant = :tenant
                      AND j.status IN ({sql_status(JobStatus.PENDING, JobStatus.QUEUED)})
                  ) AS pending_pages,
                  (SELECT count(*) FROM jobs j
                    WHERE j.tenant = :tenant
                      AND j.created_at > now() - make_interval(secs => :window)
                  ) AS recent_uploads,
                  (SELECT coalesce(sum(j.stored_bytes), 0) FROM jobs j
                    WHERE j.tenant = :tenant) AS stored_bytes,
                  t.max_pending_pages, t.uploads_per_minute, t.max_stored_bytes
                  FROM (SELECT 1) one
                  LEFT JOIN tenants t ON t.name = :tenant
                """
            ),
            {"tenant": tenant, "window": UPLOAD_WINDOW_S},
        )
    ).one()
    return TenantUsage(
        pending_pages=int(row.pending_pages),
        recent_uploads=int(row.recent_uploads),
        stored_bytes=int(row.stored_bytes),
        max_pending_pages=row.max_pending_pages,
        uploads_per_minute=row.uploads_per_minute,
        max_stored_bytes=row.max_stored_bytes,
    )


async def seconds_until_uploads_leave(session: AsyncSession, tenant: str, count: int) -> float:
    """How long until `count` of the tenant's uploads have left the window (the `count`-th
    oldest of those in it; the whole window if there are fewer)."""
    age = await session.scalar(
        text(
            """
            SELECT extract(epoch FROM now() - j.created_at)
              FROM jobs j
             WHERE j.tenant = :tenant
               AND j.created_at > now() - make_interval(secs => :window)
             ORDER BY j.created_at
            OFFSET :skip
             LIMIT 1
            """
        ),
        {"tenant": tenant, "window": UPLOAD_WINDOW_S, "skip": max(0, count - 1)},
    )
    if age is None:
        return float(UPLOAD_WINDOW_S)
    return max(0.0, UPLOAD_WINDOW_S - float(age))
