"""Fair shares of the render pool between jobs.

The render pool has a fixed number of slots (two chunks in flight per process). A job alone
may use all of them; as soon as another job waits, every slot that frees goes to the waiting
job that holds the fewest, so a long job never holds every render process while a one-page
upload waits behind it, and two long jobs converge on equal shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Hashable
from dataclasses import dataclass


@dataclass(slots=True)
class _Waiter:
    owner: Hashable
    arrival: int
    granted: asyncio.Future[None]


class FairShare:
    """`async with share.slot(owner):` holds one of `slots`; see the module's docstring."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._free = slots
        self._held: Counter[Hashable] = Counter()
        self._waiters: list[_Waiter] = []
        self._arrivals = itertools.count()

    def held(self, owner: Hashable) -> int:
        return self._held[owner]

    @contextlib.asynccontextmanager
    async def slot(self, owner: Hashable) -> AsyncIterator[None]:
        await self._acquire(owner)
        try:
            yield
        finally:
            self._release(owner)

    async def _acquire(self, owner: Hashable) -> None:
        if self._free > 0 and not self._waiters:
            self._take(owner)
            return
        waiter = _Waiter(owner, next(self._arrivals), asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            await waiter.granted
        except asyncio.CancelledError:
            if waiter.granted.done() and not waiter.granted.cancelled():
                self._release(owner)  # granted just as it was cancelled: pass the slot on
            else:
                self._waiters.remove(waiter)
            raise

    def _take(self, owner: Hashable) -> None:
        self._free -= 1
        self._held[owner] += 1

    def _release(self, owner: Hashable) -> None:
        self._held[owner] -= 1
        if self._held[owner] <= 0:
            del self._held[owner]
        self._free += 1
        while self._free > 0 and self._waiters:
            waiter = min(self._waiters, key=lambda w: (self._held[w.owner], w.arrival))
            self._waiters.remove(waiter)
            self._take(waiter.owner)
            waiter.granted.set_result(None)
