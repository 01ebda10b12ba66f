"""Queries of the webhook outbox: deliveries written with their events, claimed under a lease
by the sender of any API process, their outcomes, and the operator's list and redeliver.

Functions take an `AsyncSession` inside a transaction the caller owns. Times are the
database's (`now()`), so processes with different clocks agree on what is due.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from ocr_gateway.db.models import CallbackEvents, DeliveryStatus, WebhookDelivery
from ocr_gateway.events.types import EventType

# NOTIFY'd when deliveries are written or redelivered: every sender looks for due ones.
WEBHOOKS_CHANNEL = "ocr_gateway_webhooks"

# The events a callback receives: a job's end always, its pages' only with `page`.
JOB_EVENTS = (EventType.JOB_COMPLETED, EventType.JOB_FAILED, EventType.JOB_CANCELLED)
PAGE_EVENTS = (EventType.PAGE_DONE, EventType.PAGE_FAILED)


def _quoted(values: Sequence[str]) -> str:
    """Constants of this module as SQL literals (never client input)."""
    return ", ".join(f"'{value}'" for value in values)


def outbox_insert(events: str) -> str:
    """The statement, for a WITH clause, that writes a delivery for each row of the CTE
    `events` (columns of `job_events` returned by its INSERT) that the job's callback wants.

    The job's own callback wins over its tenant's default, and the event choice goes with the
    URL that applies. The body and `webhook_id` are fixed here, once; every attempt sends them.
    Writes nothing (and costs two primary-key lookups) when there is no callback.
    """
    return f"""
        INSERT INTO webhook_deliveries
               (webhook_id, tenant, job_id, event_type, url, payload, status)
        SELECT 'msg_' || replace(gen_random_uuid()::text, '-', ''),
               j.tenant, e.job_id, e.type, c.url,
               jsonb_build_object(
                   'type', e.type,
                   'timestamp', to_char(e.created_at AT TIME ZONE 'UTC',
                                        'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                   'data', jsonb_build_object(
                       'job_id', e.job_id,
                       'tenant', j.tenant,
                       'status', e.data -> 'status',
                       'completed_pages', e.data -> 'completed_pages',
                       'failed_pages', e.data -> 'failed_pages',
                       'total_page_number', e.data -> 'total_page_number')
                   || CASE WHEN e.page_number IS NULL THEN '{{}}'::jsonb
                           ELSE jsonb_build_object('page_number', e.page_number) END),
               {DeliveryStatus.PENDING.sql}
          FROM {events} e
          JOIN jobs j ON j.job_id = e.job_id
          JOIN tenants t ON t.name = j.tenant
         CROSS JOIN LATERAL (
               SELECT COALESCE(j.callback_url, t.callback_url) AS url,
                      CASE WHEN j.callback_url IS NOT NULL THEN j.callback_events
                           ELSE t.callback_events END AS wanted) c
         WHERE c.url IS NOT NULL
           AND (e.type IN ({_quoted(JOB_EVENTS)})
                OR (e.type IN ({_quoted(PAGE_EVENTS)})
                    AND c.wanted = '{CallbackEvents.PAGE.value}'))
        RETURNING id
    """


def notify_written(deliveries: str) -> str:
    """The main query after `outbox_insert`'s CTE `deliveries`: one NOTIFY to the senders
    when it wrote any (PostgreSQL sends it at commit)."""
    return f"SELECT pg_notify('{WEBHOOKS_CHANNEL}', '') FROM {deliveries} LIMIT 1"


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery claimed for one attempt, with what signing it needs."""

    id: int
    webhook_id: str
    url: str
    payload: dict[str, Any]
    attempt: int  # this attempt's number, 1-based
    secret: str | None  # the tenant's current secret; None if the tenant is gone


async def claim_due(session: AsyncSession, *, limit: int, lease_s: float) -> list[Claimed]:
    """Claim up to `limit` due deliveries, oldest due first, skipping those another sender
    holds. Each is counted as attempted and pushed `lease_s` ahead: if this process dies
    before recording the outcome, the delivery is due again when the lease ends."""
    rows = await session.execute(
        text(
            f"""
            WITH due AS (
                SELECT id FROM webhook_deliveries
                 WHERE status = {DeliveryStatus.PENDING.sql} AND next_attempt_at <= now()
                 ORDER BY next_attempt_at
                 LIMIT :limit
                   FOR UPDATE SKIP LOCKED)
            UPDATE webhook_deliveries d
               SET attempts = d.attempts + 1,
                   next_attempt_at = now() + make_interval(secs => :lease_s),
                   updated_at = now()
              FROM due
             WHERE d.id = due.id
            RETURNING d.id, d.webhook_id, d.url, d.payload, d.attempts,
                      (SELECT t.webhook_secret FROM tenants t WHERE t.name = d.tenant) AS secret
            """
        ),
        {"limit": limit, "lease_s": lease_s},
    )
    return [
        Claimed(row.id, row.webhook_id, row.url, row.payload, row.attempts, row.secret)
        for row in rows
    ]


async def seconds_to_next_due(session: AsyncSession) -> float | None:
    """How long until the next pending delivery is due (≤ 0: now); None if none is pending."""
    value = await session.scalar(
        text(
            f"""
            SELECT EXTRACT(EPOCH FROM min(next_attempt_at) - now())
              FROM webhook_deliveries WHERE status = {DeliveryStatus.PENDING.sql}
            """
        )
    )
    return None if value is None else float(value)


async def record_outcome(
    session: AsyncSession,
    claimed: Claimed,
    *,
    status: DeliveryStatus,
    retry_in_s: float | None,
    status_code: int | None,
    error: str | None,
) -> bool:
    """Record an attempt's outcome: delivered, failed, or pending again in `retry_in_s`.

    Only the attempt that holds the claim records: after a redeliver (attempts back to 0) or
    a lease that ran out and was claimed again, this changes nothing and answers False.
    """
    result = await session.execute(
        text(
            f"""
            UPDATE webhook_deliveries
               SET status = :status,
                   next_attempt_at = COALESCE(
                       now() + make_interval(secs => CAST(:retry_in_s AS double precision)),
                       next_attempt_at),
                   last_status_code = :status_code,
                   last_error = :error,
                   updated_at = now()
             WHERE id = :id AND attempts = :attempt AND status = {DeliveryStatus.PENDING.sql}
            """
        ),
        {
            "id": claimed.id,
            "attempt": claimed.attempt,
            "status": status.value,
            "retry_in_s": retry_in_s,
            "status_code": status_code,
            "error": error,
        },
    )
    return bool(getattr(result, "rowcount", 0))


async def give_back(session: AsyncSession, claims: Sequence[Claimed]) -> None:
    """Attempts stopped before they ended (the process is stopping): due again now, and not
    counted."""
    for claimed in claims:
        await session.execute(
            text(
                f"""
                UPDATE webhook_deliveries
                   SET attempts = attempts - 1, next_attempt_at = now(), updated_at = now()
                 WHERE id = :id AND attempts = :attempt
                   AND status = {DeliveryStatus.PENDING.sql}
                """
            ),
            {"id": claimed.id, "attempt": claimed.attempt},
        )
    if claims:
        await notify_senders(session)


async def notify_senders(session: AsyncSession) -> None:
    await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": WEBHOOKS_CHANNEL})


async def list_deliveries(
    session: AsyncSession,
    *,
    status: DeliveryStatus | None,
    tenant: str | None,
    job_id: uuid.UUID | None,
    before_id: int | None,
    limit: int,
) -> Sequence[WebhookDelivery]:
    """Deliveries newest first, filtered, from below `before_id` (the keyset cursor)."""
    query = select(WebhookDelivery).order_by(WebhookDelivery.id.desc()).limit(limit)
    if status is not None:
        query = query.where(WebhookDelivery.status == status.value)
    if tenant is not None:
        query = query.where(WebhookDelivery.tenant == tenant)
    if job_id is not None:
        query = query.where(WebhookDelivery.job_id == job_id)
    if before_id is not None:
        query = query.where(WebhookDelivery.id < before_id)
    return list(await session.scalars(query))


async def redeliver(session: AsyncSession, delivery_id: int) -> WebhookDelivery | None:
    """Send a delivery again from its first attempt, now (its body and id unchanged)."""
    row = await session.scalar(
        text(
            f"""
            UPDATE webhook_deliveries
               SET status = {DeliveryStatus.PENDING.sql}, attempts = 0,
                   next_attempt_at = now(), updated_at = now()
             WHERE id = :id
            RETURNING id
            """
        ),
        {"id": delivery_id},
    )
    if row is None:
        return None
    await notify_senders(session)
    delivery = await session.get(WebhookDelivery, delivery_id, populate_existing=True)
    return delivery
