"""Queries of detect-first jobs: their `detect_jobs` row, their pages' tasks and boxes.

Functions take an `AsyncSession` inside a transaction the caller owns. A query that finds a job
for a client takes its tenant: another tenant's job is not found at all.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import bindparam, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from ocr_gateway.db.models import DetectJob, DetectStatus, Job, PageStatus, PageTask, sql_status


async def create(session: AsyncSession, job_id: uuid.UUID, tenant: str) -> None:
    await session.execute(
        insert(DetectJob).values(job_id=job_id, tenant=tenant, status=DetectStatus.PENDING_UPLOAD)
    )


async def get(
    session: AsyncSession, job_id: uuid.UUID, *, tenant: str | None, lock: bool = False
) -> DetectJob | None:
    """The detect-first job, if it is `tenant`'s (None: the operator's view, any tenant's);
    locked for this transaction with `lock`."""
    stmt = select(DetectJob).where(DetectJob.job_id == job_id)
    if tenant is not None:
        stmt = stmt.where(DetectJob.tenant == tenant)
    if lock:
        stmt = stmt.with_for_update()
    return await session.scalar(stmt)


async def lock_by_job(session: AsyncSession, job_id: uuid.UUID) -> DetectJob | None:
    """The detect-first row of an uploaded job, locked; None for any other job."""
    return await session.scalar(
        select(DetectJob).where(DetectJob.job_ref == job_id).with_for_update()
    )


async def mark_uploaded(session: AsyncSession, job_id: uuid.UUID) -> None:
    """The job's file is recorded (its `jobs` row made in this transaction): its pages are
    published for detection."""
    await session.execute(
        update(DetectJob)
        .where(DetectJob.job_id == job_id)
        .values(status=DetectStatus.UPLOADED, job_ref=job_id, updated_at=func.now())
    )
    await session.execute(update(Job).where(Job.job_id == job_id).values(page_task=PageTask.DETECT))


async def set_status(
    session: AsyncSession,
    job_id: uuid.UUID,
    status: DetectStatus,
    *,
    error: str | None = None,
) -> None:
    await session.execute(
        update(DetectJob)
        .where(DetectJob.job_id == job_id)
        .values(status=status, error=error, updated_at=func.now())
    )


async def point_at_result(
    session: AsyncSession, job_id: uuid.UUID, *, key: str, version: int, status: DetectStatus
) -> None:
    """The job's detect result is now the object at `key` (written before this)."""
    await session.execute(
        update(DetectJob)
        .where(DetectJob.job_id == job_id)
        .values(
            result_key=key, result_version=version, status=status, error=None, updated_at=func.now()
        )
    )


async def pages_in_flight(session: AsyncSession, job_id: uuid.UUID) -> bool:
    """Whether a page of the job has been published (or answered): its detection has begun."""
    found = await session.scalar(
        text(
            f"""
            SELECT EXISTS (SELECT 1 FROM pages WHERE job_id = :job_id AND status IN (
                {
                sql_status(
                    PageStatus.PUBLISHING, PageStatus.QUEUED, PageStatus.DONE, PageStatus.FAILED
                )
            }))
            """
        ),
        {"job_id": job_id},
    )
    return bool(found)


_PAGE_BOXES = bindparam("boxes", type_=JSONB)


async def reopen_for_recognition(
    session: AsyncSession, job_id: uuid.UUID, boxes: Mapping[int, Sequence[dict[str, Any]]]
) -> None:
    """Every page of the job back to pending, to be published as `recognize` with its boxes
    (`boxes` by page number); its earlier text, boxes and error cleared."""
    await session.execute(
        update(Job).where(Job.job_id == job_id).values(page_task=PageTask.RECOGNIZE)
    )
    await session.execute(
        text(
            f"""
            UPDATE pages SET status = {PageStatus.PENDING.sql}, text = NULL, boxes = NULL,
                   tables = NULL, error = NULL, lease_until = NULL, request_boxes = :boxes,
                   updated_at = now()
             WHERE job_id = :job_id AND page_number = :page_number
            """
        ).bindparams(_PAGE_BOXES),
        [
            {"job_id": job_id, "page_number": number, "boxes": list(page_boxes)}
            for number, page_boxes in boxes.items()
        ],
    )
