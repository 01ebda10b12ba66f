"""Flow control of publishing: how much may be claimed, and how long to back off.

Pure arithmetic, so that the rules can be read and tested apart from the publishing loop.
"""

from __future__ import annotations

from dataclasses import dataclass

# After a failed publish or an unreachable broker the feeder waits before its next claim:
# FIRST_BACKOFF_S, doubling while the failures go on, up to MAX_BACKOFF_S.
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
# Under a rate limit, the shared bucket holds at most this many seconds' worth of pages (at
# least one): a dispatcher that was away cannot send a burst later, and each draw is small,
# so that several dispatchers take turns.
RATE_BURST_S = 0.1


def room_in_queue(high_water: int, depth: int, held: int) -> int:
    """How many pages may be claimed now: the high-water mark less the pages already in the
    queue and those this process holds (claimed, not in the queue's count yet, but soon)."""
    return high_water - depth - held


def claim_ahead(publishers: int, prepare_batch: int) -> int:
    """How many pages may be claimed and not yet published: the publishers' own, and two
    prepare batches to hand them while the next claim is made and read.

    A claim's pages go out behind those claimed before it, so this bounds how long a tenant
    that has just submitted waits behind another's backlog (its pages are in the next claim,
    which the tenants share). Measured with 32 publishers: B's 3 pages went out 45th to 53rd
    after B's submission instead of ~200th with claims of 256 ahead, at the same publish rate;
    one prepare batch fewer put them ~25th but cost a fifth of the rate.
    """
    return publishers + 2 * prepare_batch


def may_claim(ahead: int, unsent: int, prepare_batch: int) -> bool:
    """Whether a prepare batch's worth of pages (or all `ahead`, if fewer) may be claimed:
    with `unsent` pages claimed and not yet published, claims are never made a page at a time."""
    return ahead - unsent >= min(prepare_batch, ahead)


def claim_size(batch_size: int, room: int, ahead: int, unsent: int, prepare_batch: int) -> int:
    """How many pages to claim now: within the batch size, the room under the high-water mark
    and the pages that may be claimed ahead of publishing (`ahead` less the `unsent`); 0 while
    `may_claim` says no."""
    if not may_claim(ahead, unsent, prepare_batch):
        return 0
    return max(0, min(batch_size, room, ahead - unsent))


@dataclass(frozen=True, slots=True)
class ClaimLimits:
    """How many pages the next claim may take (`total`), and of those how many batch pages."""

    total: int
    batch: int


def claim_limits(
    batch_size: int, room: int, ahead: int, unsent: int, prepare_batch: int
) -> ClaimLimits:
    """The next claim's limits. Task pages are bound by the batch size and the pages claimed
    ahead of publishing, not by the queue's high-water mark (they have their own, counted in
    the claim: `TASK_HIGH_WATER`), so they still go out while a batch backlog fills the queue;
    batch pages also need `room` under the high-water mark."""
    if not may_claim(ahead, unsent, prepare_batch):
        return ClaimLimits(0, 0)
    total = max(0, min(batch_size, ahead - unsent))
    return ClaimLimits(total, max(0, min(total, room)))


def backoff_after_failure(backoff: float) -> float:
    """The wait before the next claim once a publish failed: at least FIRST_BACKOFF_S."""
    return max(backoff, FIRST_BACKOFF_S)


def next_backoff(backoff: float) -> float:
    """The wait after this one while failures go on: doubled, up to MAX_BACKOFF_S."""
    return min(MAX_BACKOFF_S, backoff * 2)
