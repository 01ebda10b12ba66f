"""Publishing's flow-control arithmetic: room under the high-water mark, and the back-off."""

from __future__ import annotations

import itertools

import pytest

from ocr_gateway.dispatch.flow import (
    FIRST_BACKOFF_S,
    MAX_BACKOFF_S,
    backoff_after_failure,
    claim_ahead,
    claim_size,
    may_claim,
    next_backoff,
    room_in_queue,
)


@pytest.mark.parametrize(
    ("high_water", "depth", "held", "room"),
    [
        (1000, 0, 0, 1000),
        (1000, 400, 0, 600),
        (1000, 400, 256, 344),  # held pages are not in the queue's count yet, but will be
        (1000, 0, 1000, 0),
        (1000, 1000, 0, 0),
        (50, 60, 0, -10),  # over the mark (workers slower than a late confirm): no claim
        (50, 40, 32, -22),
        (1, 0, 0, 1),
    ],
)
def test_room_in_queue(high_water: int, depth: int, held: int, room: int) -> None:
    assert room_in_queue(high_water, depth, held) == room


def test_the_room_never_lets_queue_and_held_pages_pass_the_mark() -> None:
    for high_water, depth, held in itertools.product((1, 50, 1000), (0, 1, 49, 999), (0, 7, 64)):
        room = room_in_queue(high_water, depth, held)
        claimable = max(0, room)
        assert depth + held + claimable <= max(high_water, depth + held)
        if depth + held < high_water:
            assert depth + held + claimable == high_water, "all the room is used"


def test_a_failure_starts_the_backoff_and_never_shortens_it() -> None:
    assert backoff_after_failure(0.0) == FIRST_BACKOFF_S == 1.0
    assert backoff_after_failure(0.5) == FIRST_BACKOFF_S
    assert backoff_after_failure(8.0) == 8.0
    assert backoff_after_failure(MAX_BACKOFF_S) == MAX_BACKOFF_S


def test_the_backoff_doubles_while_failures_go_on_up_to_the_maximum() -> None:
    waits = [FIRST_BACKOFF_S]
    for _ in range(8):
        waits.append(next_backoff(waits[-1]))
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]
    assert MAX_BACKOFF_S == 30.0


def test_a_failure_during_a_long_backoff_keeps_it() -> None:
    backoff = FIRST_BACKOFF_S
    for _ in range(4):
        backoff = next_backoff(backoff_after_failure(backoff))
    assert backoff == 16.0
    assert next_backoff(0.0) == 0.0, "no failure, no wait"


def test_claims_stay_a_few_batches_ahead_of_the_publishers() -> None:
    assert claim_ahead(32, 16) == 64
    assert claim_ahead(1, 16) == 33


@pytest.mark.parametrize(
    ("batch_size", "room", "unsent", "size"),
    [
        (256, 1000, 0, 64),  # never more ahead than claim_ahead, whatever the batch size
        (256, 1000, 40, 24),
        (256, 1000, 48, 16),
        (256, 1000, 49, 0),  # less than a prepare batch free: wait for publishes
        (256, 1000, 64, 0),
        (256, 10, 0, 10),  # the high-water mark still rules
        (256, -5, 0, 0),
        (8, 1000, 0, 8),
    ],
)
def test_claim_size(batch_size: int, room: int, unsent: int, size: int) -> None:
    assert claim_size(batch_size, room, 64, unsent, 16) == size
    assert may_claim(64, unsent, 16) == (unsent <= 48)


def test_a_lookahead_smaller_than_a_batch_still_claims_when_nothing_is_unsent() -> None:
    assert may_claim(8, 0, 16)
    assert claim_size(256, 1000, 8, 0, 16) == 8
    assert not may_claim(8, 1, 16)
