"""Polling until a condition holds, with a clear error when it never does.

Shared by the tests and the benchmarks: a test that times out fails with `ConditionTimeout`'s
message; a benchmark uses the returned time as the moment the condition was first seen true.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class ConditionTimeout(TimeoutError):
    """A polled condition did not become true within its timeout."""


async def wait_until(
    check: Callable[[], Awaitable[bool]],
    timeout: float = 30.0,
    interval: float = 0.1,
    *,
    what: str | None = None,
) -> float:
    """Poll `check` until it is true and return the `time.perf_counter()` at which it was seen
    true; raise `ConditionTimeout` naming `what` (or the check) when `timeout` passes first."""
    deadline = time.perf_counter() + timeout
    while True:
        if await check():
            return time.perf_counter()
        if time.perf_counter() > deadline:
            name = what or getattr(check, "__name__", "condition")
            raise ConditionTimeout(f"condition not met within {timeout}s: {name}")
        await asyncio.sleep(interval)
