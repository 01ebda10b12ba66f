"""Long-running background loops shared by the API process and the dispatcher process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

log = logging.getLogger(__name__)


async def every(interval: float, name: str, action: Callable[[], Awaitable[object]]) -> None:
    """Run `action` now and then every `interval` seconds; a failure is logged, not fatal."""
    while True:
        try:
            await action()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("%s failed: %r", name, exc)
        await asyncio.sleep(interval)


async def supervise(name: str, run: Callable[[], Awaitable[None]]) -> None:
    """Keep a background loop alive: a crash is logged and the loop restarted."""
    while True:
        try:
            await run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s crashed; restarting", name)
            await asyncio.sleep(1.0)


async def cancel_all(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel background loops and wait until each has ended, whatever it raised."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(BaseException):
            await task
