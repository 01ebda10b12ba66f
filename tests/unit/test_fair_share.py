"""Render slots shared between jobs: a long job never holds every slot while another waits."""

from __future__ import annotations

import asyncio

import pytest

from ocr_gateway.rendering.fair_share import FairShare
from ocr_gateway.rendering.service import CHUNK_PIXELS, chunk_pages


async def _hold(share: FairShare, owner: str, release: asyncio.Event, log: list[str]) -> None:
    async with share.slot(owner):
        log.append(owner)
        await release.wait()


async def test_a_lone_job_takes_every_slot() -> None:
    share = FairShare(4)
    release = asyncio.Event()
    log: list[str] = []
    tasks = [asyncio.create_task(_hold(share, "long", release, log)) for _ in range(4)]
    await asyncio.sleep(0)
    assert share.held("long") == 4
    release.set()
    await asyncio.gather(*tasks)
    assert share.held("long") == 0


async def test_a_freed_slot_goes_to_the_waiting_job_that_holds_fewest() -> None:
    share = FairShare(4)
    long_release = [asyncio.Event() for _ in range(6)]
    log: list[str] = []
    long_jobs = [asyncio.create_task(_hold(share, "long", e, log)) for e in long_release]
    await asyncio.sleep(0)
    assert share.held("long") == 4  # two more of its chunks wait
    short_release = asyncio.Event()
    short = asyncio.create_task(_hold(share, "short", short_release, log))
    await asyncio.sleep(0)
    long_release[0].set()  # the first slot to free goes to the short job, not to "long"
    await asyncio.sleep(0.01)
    assert share.held("short") == 1
    assert share.held("long") == 3
    short_release.set()
    for event in long_release:
        event.set()
    await asyncio.gather(short, *long_jobs)
    assert log.index("short") == 4, log


async def test_two_long_jobs_converge_on_equal_shares() -> None:
    share = FairShare(4)
    events = {name: [asyncio.Event() for _ in range(8)] for name in ("a", "b")}
    log: list[str] = []
    tasks = [asyncio.create_task(_hold(share, "a", e, log)) for e in events["a"]]
    await asyncio.sleep(0)
    tasks += [asyncio.create_task(_hold(share, "b", e, log)) for e in events["b"]]
    await asyncio.sleep(0)
    for event in events["a"][:2]:
        event.set()
    await asyncio.sleep(0.01)
    assert (share.held("a"), share.held("b")) == (2, 2)
    for group in events.values():
        for event in group:
            event.set()
    await asyncio.gather(*tasks)


async def test_a_waiter_cancelled_after_its_grant_passes_the_slot_on() -> None:
    share = FairShare(1)
    release = asyncio.Event()
    log: list[str] = []
    holder = asyncio.create_task(_hold(share, "a", release, log))
    await asyncio.sleep(0)
    cancelled = asyncio.create_task(_hold(share, "b", asyncio.Event(), log))
    waiting = asyncio.create_task(_hold(share, "c", release, log))
    await asyncio.sleep(0)
    release.set()  # the slot is granted to "b" (fewest held, first come) ...
    await asyncio.sleep(0)
    cancelled.cancel()  # ... which is cancelled before it runs: "c" must still get it
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    await asyncio.wait_for(asyncio.gather(holder, waiting), 2)
    assert share.held("b") == 0


@pytest.mark.parametrize(
    ("page_pixels", "expected"),
    [(0, 8), (3_866_000, 8), (CHUNK_PIXELS // 3, 3), (25_000_000, 1), (10 * CHUNK_PIXELS, 1)],
)
def test_chunks_hold_fewer_pages_as_pages_grow(page_pixels: int, expected: int) -> None:
    assert chunk_pages(8, page_pixels) == expected
