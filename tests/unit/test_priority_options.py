"""The upload's `priority` field (pure): 0-9 in digits, else a 422; absent is 0; never part of
the dedup key's options."""

from __future__ import annotations

import pytest

from ocr_gateway.core.errors import InvalidField
from ocr_gateway.core.settings import Settings
from ocr_gateway.dispatch.schemas import MAX_JOB_PRIORITY, PriorityChange, RateLimit
from ocr_gateway.uploads.media import MediaType
from ocr_gateway.uploads.options import OPTION_FIELDS, parse_priority, read_options

SETTINGS = Settings(_env_file=None)


@pytest.mark.parametrize(("raw", "priority"), [(None, 0), ("", 0), (" 7 ", 7), ("0", 0), ("9", 9)])
def test_a_priority_in_range_is_read(raw: str | None, priority: int) -> None:
    assert parse_priority(raw) == priority


@pytest.mark.parametrize("raw", ["10", "-1", "+3", "1.0", "high", "٣", "99999999999999999999"])
def test_anything_else_is_refused(raw: str) -> None:
    with pytest.raises(InvalidField, match="priority must be 0 to 9"):
        parse_priority(raw)


def test_the_form_field_is_an_upload_option_but_not_part_of_the_dedup_key() -> None:
    assert "priority" in OPTION_FIELDS
    options = read_options({}, {"priority": "4"}, SETTINGS)
    assert options.priority == 4
    for media_type in MediaType:
        assert "priority" not in options.key_options(media_type)
    assert read_options({}, {}, SETTINGS).priority == 0


def test_the_admin_bodies_hold_their_ranges() -> None:
    assert MAX_JOB_PRIORITY == 9
    assert PriorityChange.model_validate({"priority": 9}).priority == 9
    assert RateLimit.model_validate({"pages_per_second": None}).pages_per_second is None
    assert RateLimit.model_validate({"pages_per_second": 3}).pages_per_second == 3.0
    for bad in ({"pages_per_second": 0}, {"pages_per_second": "2"}, {}):
        with pytest.raises(ValueError, match="pages_per_second"):
            RateLimit.model_validate(bad)
