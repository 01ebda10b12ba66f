"""The pure rules of tenant quotas: which limit applies, which one an upload breaks, and the
Retry-After it gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocr_gateway.tenants.quotas import (
    PENDING_PAGES,
    RETRY_AFTER_S,
    STORED_BYTES,
    UPLOADS_PER_MINUTE,
    Breach,
    Limits,
    find_breach,
    resolve_limits,
    retry_after,
)
from ocr_gateway.tenants.usage import TenantUsage
from tests.support.gateway import make_settings

LIMITS = Limits(max_pending_pages=100, uploads_per_minute=10, max_stored_bytes=1000)


def usage(pages: int = 0, uploads: int = 0, stored: int = 0) -> TenantUsage:
    return TenantUsage(pending_pages=pages, recent_uploads=uploads, stored_bytes=stored)


def test_the_tenants_own_limits_override_the_settings_one_by_one(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        tenant_max_pending_pages=500,
        tenant_uploads_per_minute=60,
        tenant_max_stored_bytes=10**9,
    )
    own = TenantUsage(0, 0, 0, max_pending_pages=7, uploads_per_minute=None, max_stored_bytes=9)

    limits = resolve_limits(settings, own)

    assert (limits.max_pending_pages, limits.uploads_per_minute, limits.max_stored_bytes) == (
        7,
        60,
        9,
    )
    assert limits.own == {PENDING_PAGES, STORED_BYTES}


def test_within_every_limit_nothing_is_breached() -> None:
    assert find_breach("t", LIMITS, usage(90, 5, 999), new_jobs=5, new_pages=10) is None


@pytest.mark.parametrize(
    ("current", "new_jobs", "new_pages", "limit"),
    [
        (usage(uploads=9), 2, 1, UPLOADS_PER_MINUTE),
        (usage(pages=95), 1, 6, PENDING_PAGES),
        (usage(stored=1000), 1, 1, STORED_BYTES),
        # A batch is judged whole: three files of 40 pages pass one by one, not together.
        (usage(), 3, 120, PENDING_PAGES),
    ],
)
def test_the_limit_an_upload_would_exceed_is_named(
    current: TenantUsage, new_jobs: int, new_pages: int, limit: str
) -> None:
    breach = find_breach("acme", LIMITS, current, new_jobs=new_jobs, new_pages=new_pages)

    assert breach is not None
    assert breach.limit == limit
    assert "'acme'" in breach.detail
    assert "OCR_GATEWAY_" + limit.upper() in breach.detail


def test_a_limit_of_the_tenants_own_says_so() -> None:
    own = Limits(100, 10, 1000, own=frozenset({PENDING_PAGES}))

    breach = find_breach("acme", own, usage(pages=100), new_jobs=1, new_pages=1)

    assert breach is not None
    assert "the tenant's own limit" in breach.detail


def test_uploads_over_the_window_say_how_many_must_leave_it() -> None:
    breach = find_breach("t", LIMITS, usage(uploads=8), new_jobs=4, new_pages=4)

    assert breach is not None and breach.uploads_to_leave == 2


def test_retry_after_is_the_windows_wait_for_uploads_and_fixed_for_the_others() -> None:
    rate = Breach(UPLOADS_PER_MINUTE, "", uploads_to_leave=1)
    assert retry_after(rate, 12.2) == 13
    assert retry_after(rate, 0.0) == 1
    assert retry_after(rate, None) == 60
    assert retry_after(Breach(PENDING_PAGES, ""), 5.0) == RETRY_AFTER_S
    assert retry_after(Breach(STORED_BYTES, "")) == RETRY_AFTER_S
