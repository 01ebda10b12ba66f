"""Queries of `/convert/batch` jobs: their columns, their downloads, and their pages with
their tables.

Functions take an `AsyncSession` inside a transaction the caller owns, and return plain values.
A download is found for a client only through its job's tenant (`tenant`), so another tenant's
file is not found at all; None is the operator's view.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ocr_gateway.db.models import Download, DownloadKind, Job, Page


async def mark_convert_job(
    session: AsyncSession,
    job_id: uuid.UUID,
    *,
    source_files: list[dict[str, Any]],
    file_id: uuid.UUID,
    filename: str,
) -> bool:
    """Make the job a table-extracting one made of `source_files`, with its workbook's
    download row; False (and nothing changed) when the job was not inserted."""
    marked = await session.scalar(
        update(Job)
        .where(Job.job_id == job_id)
        .values(extract_tables=True, source_files=source_files)
        .returning(Job.job_id)
    )
    if marked is None:
        return False
    session.add(Download(file_id=file_id, job_id=job_id, kind=DownloadKind.XLSX, filename=filename))
    await session.flush()
    return True


async def list_downloads(session: AsyncSession, job_id: uuid.UUID) -> Sequence[Download]:
    rows = await session.scalars(
        select(Download).where(Download.job_id == job_id).order_by(Download.created_at)
    )
    return rows.all()


async def get_download(
    session: AsyncSession, file_id: uuid.UUID, *, tenant: str | None
) -> Row[Download, Job] | None:
    """The download and its job, if it exists (and its job belongs to `tenant`, when given)."""
    stmt = select(Download, Job).join(Job, Job.job_id == Download.job_id)
    stmt = stmt.where(Download.file_id == file_id)
    if tenant is not None:
        stmt = stmt.where(Job.tenant == tenant)
    return (await session.execute(stmt)).first()


async def page_batch(
    session: AsyncSession, job_id: uuid.UUID, *, after: int, limit: int
) -> Sequence[Row[int, str, str | None, list[dict[str, Any]] | None, str | None]]:
    """Up to `limit` pages after page `after`: number, status, text, tables and error."""
    rows = await session.execute(
        select(Page.page_number, Page.status, Page.text, Page.tables, Page.error)
        .where(Page.job_id == job_id, Page.page_number > after)
        .order_by(Page.page_number)
        .limit(limit)
    )
    return rows.all()
