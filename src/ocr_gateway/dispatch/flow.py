"""Flow control of publishing: how much may be claimed, and how long to back off.

Pure arithmetic, so that the rules can be read and tested apart from the publishing loop.
"""

from __future__ import annotations

# After a failed publish or an unreachable broker the feeder waits before its next claim:
# FIRST_BACKOFF_S, doubling while the failures go on, up to MAX_BACKOFF_S.
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0


def room_in_queue(high_water: int, depth: int, held: int) -> int:
    """How many pages may be claimed now: the high-water mark less the pages already in the
    queue and those this process holds (claimed, not in the queue's count yet, but soon)."""
    return high_water - depth - held


def backoff_after_failure(backoff: float) -> float:
    """The wait before the next claim once a publish failed: at least FIRST_BACKOFF_S."""
    return max(backoff, FIRST_BACKOFF_S)


def next_backoff(backoff: float) -> float:
    """The wait after this one while failures go on: doubled, up to MAX_BACKOFF_S."""
    return min(MAX_BACKOFF_S, backoff * 2)
