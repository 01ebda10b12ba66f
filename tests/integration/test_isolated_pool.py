"""The inspect processes: one task's crash or overrun never reaches another task."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import pytest

from ocr_gateway.core.process_pool import IsolatedPool, TaskTimedOut, WorkerLost


def _sleep(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def _die() -> None:
    os._exit(9)


@pytest.fixture
async def pool() -> AsyncIterator[IsolatedPool]:
    isolated = IsolatedPool("inspect-test", 3)
    await isolated.start()
    yield isolated
    isolated.shutdown()


async def test_an_overrun_and_a_crash_touch_no_other_task(pool: IsolatedPool) -> None:
    """One task runs for 30 s under a 1 s limit and one kills its process, while four quick
    tasks run beside them: the quick ones all succeed, and the pool still works after."""
    slow = asyncio.ensure_future(pool.run(_sleep, 30.0, timeout=1.0))
    crash = asyncio.ensure_future(pool.run(_die, timeout=10.0))
    quick = [pool.run(_sleep, 0.05, timeout=10.0) for _ in range(4)]
    results = await asyncio.gather(*quick)
    assert all(isinstance(pid, int) for pid in results)
    with pytest.raises(TaskTimedOut):
        await slow
    with pytest.raises(WorkerLost):
        await crash
    assert pool.rebuilds == 2
    assert isinstance(await pool.run(_sleep, 0.0, timeout=10.0), int)


async def test_tasks_beyond_the_processes_wait_for_a_free_one(pool: IsolatedPool) -> None:
    """Six half-second tasks on three processes: each process runs one task at a time."""
    pids = await asyncio.gather(*(pool.run(_sleep, 0.5, timeout=10.0) for _ in range(6)))
    assert sorted(pids.count(pid) for pid in set(pids)) == [2, 2, 2]
