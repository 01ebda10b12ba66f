"""The retry schedule of webhook deliveries: which answers are retried, and when."""

from __future__ import annotations

import email.utils

import pytest

from ocr_gateway.webhooks.retry import (
    JITTER,
    RETRY_AFTER_CAP_S,
    Verdict,
    judge,
    parse_retry_after,
    retry_delay,
    schedule,
)


def test_eight_attempts_with_the_default_base_span_about_half_an_hour() -> None:
    waits = schedule(15.0, 8)
    assert waits == [15, 30, 60, 120, 240, 480, 960]
    assert sum(waits) / 60 == pytest.approx(31.75)
    # With the jitter at either extreme, still "about 30 minutes".
    assert sum(waits) * (1 - JITTER) > 25 * 60 and sum(waits) * (1 + JITTER) < 39 * 60


def test_each_wait_is_the_backoff_within_the_jitter() -> None:
    for attempt, nominal in enumerate(schedule(15.0, 8), start=1):
        low = retry_delay(attempt, 15.0, uniform=lambda a, _b: a)
        high = retry_delay(attempt, 15.0, uniform=lambda _a, b: b)
        assert (low, high) == pytest.approx((nominal * (1 - JITTER), nominal * (1 + JITTER)))


def test_a_longer_retry_after_wins_up_to_an_hour_and_a_shorter_one_does_not() -> None:
    exact = {"uniform": lambda _a, _b: 1.0}
    assert retry_delay(1, 15.0, retry_after_s=120.0, **exact) == 120.0
    assert retry_delay(3, 15.0, retry_after_s=5.0, **exact) == 60.0
    assert retry_delay(1, 15.0, retry_after_s=10**9, **exact) == RETRY_AFTER_CAP_S


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    now = 1_764_700_000.0
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now) == 30.0
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None


@pytest.mark.parametrize(
    ("status_code", "verdict"),
    [
        (200, Verdict.DELIVERED),
        (204, Verdict.DELIVERED),
        (None, Verdict.RETRY),  # connection error or timeout
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (502, Verdict.RETRY),
        (503, Verdict.RETRY),
        (301, Verdict.GIVE_UP),  # redirects are not followed
        (400, Verdict.GIVE_UP),
        (401, Verdict.GIVE_UP),
        (404, Verdict.GIVE_UP),
        (410, Verdict.GIVE_UP),
    ],
)
def test_what_is_retried(status_code: int | None, verdict: Verdict) -> None:
    assert judge(status_code) is verdict
