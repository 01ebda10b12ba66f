"""Per-tenant limits on uploads: pages pending or in flight, uploads per minute, bytes stored.

Each limit is the tenant's own value (`tenants` row) or, when that is NULL, the setting
(`OCR_GATEWAY_TENANT_MAX_PENDING_PAGES`, `..._UPLOADS_PER_MINUTE`, `..._MAX_STORED_BYTES`).

- `enforce_quotas` runs in the transaction that inserts an upload's jobs, under a per-tenant
  advisory lock, so two uploads checked at once never both take the last room; a batch is
  checked as a whole (each of its files is an upload, its pages add up), and refused whole.
- `precheck_quotas` runs before the body is read, without the lock: a tenant already at a
  limit is refused before its upload costs a spool to disk.

A refusal is `QuotaExceeded` (429) naming the limit. Its `Retry-After` is exact for uploads per
minute (when enough of the tenant's uploads have left the last minute); pages and bytes go down
when work finishes or jobs are deleted, which no one can foresee, so it is `RETRY_AFTER_S` then.
Bytes stored are known only once pages are rendered: that limit refuses uploads once the total
has reached it, and the last upload accepted may take the total over by its own pages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from ocr_gateway.core.errors import QuotaExceeded
from ocr_gateway.core.settings import Settings
from ocr_gateway.db.engine import SessionFactory
from ocr_gateway.tenants import usage as usage_repo
from ocr_gateway.tenants.usage import UPLOAD_WINDOW_S, TenantUsage

PENDING_PAGES = "tenant_max_pending_pages"
UPLOADS_PER_MINUTE = "tenant_uploads_per_minute"
STORED_BYTES = "tenant_max_stored_bytes"
# The wait suggested when pages or bytes are over their limit: a few pages' OCR, or a delete.
RETRY_AFTER_S = 30


@dataclass(frozen=True, slots=True)
class Limits:
    """A tenant's limits, each its own or the settings' default."""

    max_pending_pages: int
    uploads_per_minute: int
    max_stored_bytes: int
    # The limits (by name) that the tenant's own row sets.
    own: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Breach:
    """The limit an upload would exceed, why, and (uploads per minute) how many of the
    tenant's recent uploads must leave the window before it fits."""

    limit: str
    detail: str
    uploads_to_leave: int = 0


class LimitOverrides(Protocol):
    """A tenant's own limits (None: the default): its row, or its usage read with them."""

    @property
    def max_pending_pages(self) -> int | None: ...
    @property
    def uploads_per_minute(self) -> int | None: ...
    @property
    def max_stored_bytes(self) -> int | None: ...


def resolve_limits(settings: Settings, usage: LimitOverrides) -> Limits:
    """The tenant's own limits where its row sets them, the settings' defaults elsewhere."""
    own = {
        name
        for name, value in (
            (PENDING_PAGES, usage.max_pending_pages),
            (UPLOADS_PER_MINUTE, usage.uploads_per_minute),
            (STORED_BYTES, usage.max_stored_bytes),
        )
        if value is not None
    }
    return Limits(
        max_pending_pages=_or(usage.max_pending_pages, settings.tenant_max_pending_pages),
        uploads_per_minute=_or(usage.uploads_per_minute, settings.tenant_uploads_per_minute),
        max_stored_bytes=_or(usage.max_stored_bytes, settings.tenant_max_stored_bytes),
        own=frozenset(own),
    )


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


def _source(limit: str, limits: Limits) -> str:
    setting = "OCR_GATEWAY_" + limit.upper()
    return f"the tenant's own limit, over {setting}" if limit in limits.own else setting


def find_breach(
    tenant: str, limits: Limits, usage: TenantUsage, *, new_jobs: int, new_pages: int
) -> Breach | None:
    """The first limit that `new_jobs` uploads of `new_pages` pages in all would exceed."""
    if usage.recent_uploads + new_jobs > limits.uploads_per_minute:
        return Breach(
            UPLOADS_PER_MINUTE,
            f"tenant {tenant!r} made {usage.recent_uploads} uploads in the last minute and this"
            f" request adds {new_jobs}; the limit is {limits.uploads_per_minute} a minute"
            f" ({_source(UPLOADS_PER_MINUTE, limits)})",
            uploads_to_leave=usage.recent_uploads + new_jobs - limits.uploads_per_minute,
        )
    if usage.pending_pages + new_pages > limits.max_pending_pages:
        return Breach(
            PENDING_PAGES,
            f"tenant {tenant!r} has {usage.pending_pages} pages pending or in flight and this"
            f" request adds {new_pages}; the limit is {limits.max_pending_pages}"
            f" ({_source(PENDING_PAGES, limits)})",
        )
    if usage.stored_bytes >= limits.max_stored_bytes:
        return Breach(
            STORED_BYTES,
            f"tenant {tenant!r} stores {usage.stored_bytes} bytes of page images; the limit is"
            f" {limits.max_stored_bytes} ({_source(STORED_BYTES, limits)}); delete jobs to make"
            " room",
        )
    return None


def retry_after(breach: Breach, wait_s: float | None = None) -> int:
    """Whole seconds for `Retry-After`: the window's wait for uploads per minute (a full
    window when more uploads must leave than it holds), else RETRY_AFTER_S."""
    if breach.limit != UPLOADS_PER_MINUTE:
        return RETRY_AFTER_S
    return max(1, math.ceil(UPLOAD_WINDOW_S if wait_s is None else wait_s))


async def enforce_quotas(
    session: AsyncSession, settings: Settings, tenant: str, *, new_jobs: int, new_pages: int
) -> None:
    """Raise QuotaExceeded if `tenant` may not add these jobs now. Call it in the transaction
    that inserts them: the lock it takes holds other uploads of the tenant until the commit."""
    await usage_repo.lock_tenant_quota(session, tenant)
    await _check(session, settings, tenant, new_jobs=new_jobs, new_pages=new_pages)


async def precheck_quotas(sessions: SessionFactory, settings: Settings, tenant: str) -> None:
    """Before an upload is read: refuse a tenant that is already at one of its limits (one
    upload of one page would exceed it)."""
    async with sessions() as session:
        await _check(session, settings, tenant, new_jobs=1, new_pages=1)


async def _check(
    session: AsyncSession, settings: Settings, tenant: str, *, new_jobs: int, new_pages: int
) -> None:
    usage = await usage_repo.read_usage(session, tenant)
    limits = resolve_limits(settings, usage)
    breach = find_breach(tenant, limits, usage, new_jobs=new_jobs, new_pages=new_pages)
    if breach is None:
        return
    wait_s: float | None = None
    if breach.limit == UPLOADS_PER_MINUTE and new_jobs <= limits.uploads_per_minute:
        wait_s = await usage_repo.seconds_until_uploads_leave(
            session, tenant, breach.uploads_to_leave
        )
    raise QuotaExceeded(
        breach.detail, limit=breach.limit, retry_after_s=retry_after(breach, wait_s)
    )
