"""When a delivery is tried again: which answers are worth a retry, and after how long.

Pure functions, so the schedule can be read and tested without a clock: attempt n (1-based)
that fails is followed by attempt n+1 after `base * 2**(n-1)`, give or take 20% of jitter (so
receivers that failed together are not hit together again), or after the receiver's own
`Retry-After` on a 429 or 503 when that is longer (up to an hour). With the defaults (15 s, 8
attempts) the 7 waits add up to 31.75 minutes.
"""

from __future__ import annotations

import email.utils
import enum
import random
from collections.abc import Callable

JITTER = 0.2
RETRY_AFTER_CAP_S = 3600.0
RETRY_AFTER_STATUSES = frozenset({429, 503})


class Verdict(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    GIVE_UP = "give_up"


def judge(status_code: int | None) -> Verdict:
    """2xx: delivered; no answer (connection error, timeout), 429 or 5xx: worth a retry;
    any other answer (4xx, a redirect, which is not followed): no retry will change it."""
    if status_code is None or status_code == 429 or status_code >= 500:
        return Verdict.RETRY
    if 200 <= status_code < 300:
        return Verdict.DELIVERED
    return Verdict.GIVE_UP


def backoff_s(attempt: int, base_s: float) -> float:
    """The nominal wait after failed attempt `attempt` (1-based)."""
    return base_s * float(2 ** (attempt - 1))


def schedule(base_s: float, max_attempts: int) -> list[float]:
    """The nominal waits between `max_attempts` attempts (one fewer than the attempts)."""
    return [backoff_s(n, base_s) for n in range(1, max_attempts)]


def parse_retry_after(value: str | None, now: float) -> float | None:
    """A `Retry-After` header in seconds from `now` (unix time): delta-seconds or an HTTP
    date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def retry_delay(
    attempt: int,
    base_s: float,
    *,
    retry_after_s: float | None = None,
    uniform: Callable[[float, float], float] = random.uniform,
) -> float:
    """The wait before the attempt after failed attempt `attempt`: the back-off with jitter,
    or the receiver's `Retry-After` (bounded) when longer."""
    delay = backoff_s(attempt, base_s) * uniform(1 - JITTER, 1 + JITTER)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, RETRY_AFTER_CAP_S))
    return delay
