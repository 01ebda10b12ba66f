"""Polling until a condition holds, with a clear failure when it never does."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest


async def wait_until(
    check: Callable[[], Awaitable[bool]], timeout: float = 30.0, interval: float = 0.1
) -> None:
    """Poll `check` until it is true; fail the test with a clear message on timeout."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if await check():
            return
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"condition not met within {timeout}s: {check.__name__}")
        await asyncio.sleep(interval)
