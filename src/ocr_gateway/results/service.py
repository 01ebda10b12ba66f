"""Storing one OCR result: exactly-once effect for at-least-once delivery."""

from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from ocr_gateway.db.engine import SessionFactory
from ocr_gateway.db.models import PageStatus
from ocr_gateway.events import repository as events_repo
from ocr_gateway.events.types import EventType
from ocr_gateway.jobs import repository as jobs_repo
from ocr_gateway.messaging.contracts import ResultMessage
from ocr_gateway.metrics import registry as metrics
from ocr_gateway.results import repository as repo

log = logging.getLogger(__name__)

# Called in a stored result's transaction, under its job's row lock, with the job's status
# after the recount: a detect-first job moves on here (detect/service.py, `after_result`).
AfterResult = Callable[[AsyncSession, uuid.UUID, str | None], Awaitable[None]]


class ResultOutcome(enum.StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    UNKNOWN = "unknown"


async def store_result(
    sessions: SessionFactory, result: ResultMessage, *, after: AfterResult | None = None
) -> ResultOutcome:
    """Write the page's text and status, then recount its job under the job's row lock.

    The lock serialises results of one job, so `completed_pages` is always the exact number of
    done pages; a page already done (or cancelled) is never changed again, so redeliveries
    change nothing. The page's event, and the job's if it has just finished, are recorded in the
    same transaction.
    """
    async with sessions.begin() as session:
        job = await jobs_repo.lock_job(session, result.job_id)
        if job is None:
            return ResultOutcome.UNKNOWN
        before = job.status
        changed = await repo.store_page_result(
            session,
            job_id=result.job_id,
            page_number=result.page_number,
            status=PageStatus(result.status),
            text_value=result.text,
            error=result.error,
            boxes=[box.model_dump() for box in result.boxes] if result.boxes else None,
            tables=(
                None
                if result.tables is None
                else [table.model_dump(mode="json") for table in result.tables]
            ),
        )
        if changed is None:
            exists = await jobs_repo.get_page(session, result.job_id, result.page_number)
            return ResultOutcome.DUPLICATE if exists is not None else ResultOutcome.UNKNOWN
        status = await jobs_repo.refresh_job_progress(session, result.job_id)
        page_event = EventType.PAGE_DONE if result.status == "done" else EventType.PAGE_FAILED
        await events_repo.record_event(
            session, result.job_id, page_event, page_number=result.page_number
        )
        await events_repo.record_status_change(session, result.job_id, before, status)
        if after is not None:
            await after(session, result.job_id, status)
    metrics.RESULTS_STORED.labels(status=result.status).inc()
    if changed.queued_age_s is not None:
        metrics.RESULT_AGE.observe(max(0.0, changed.queued_age_s))
    log.info(
        "result stored job_id=%s page_number=%d status=%s job_status=%s",
        result.job_id,
        result.page_number,
        result.status,
        status,
    )
    return ResultOutcome.STORED
