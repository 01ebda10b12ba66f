"""The job list's cursor: an opaque string that reads back as the job it was made from."""

from __future__ import annotations

import base64
import datetime as dt
import uuid

import pytest

from ocr_gateway.core.errors import MalformedRequest
from ocr_gateway.db.models import Job
from ocr_gateway.jobs.service import decode_cursor, encode_cursor


@pytest.mark.parametrize(
    "created_at",
    [
        dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC),
        dt.datetime(1999, 12, 31, 23, 59, 59, tzinfo=dt.timezone(dt.timedelta(hours=-5))),
        dt.datetime(2026, 6, 1, 12, 0, 0, 1, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
    ],
)
def test_a_cursor_reads_back_as_the_jobs_time_and_id(created_at: dt.datetime) -> None:
    job = Job(job_id=uuid.uuid4(), created_at=created_at)
    cursor = encode_cursor(job)
    assert decode_cursor(cursor) == (created_at, job.job_id)
    decoded_at, _ = decode_cursor(cursor)
    assert decoded_at.utcoffset() == created_at.utcoffset(), "the time zone survives"


def test_a_cursor_is_url_safe_without_padding() -> None:
    for microsecond in range(0, 999_999, 97_001):
        job = Job(
            job_id=uuid.uuid4(),
            created_at=dt.datetime(2026, 1, 1, microsecond=microsecond, tzinfo=dt.UTC),
        )
        cursor = encode_cursor(job)
        assert cursor.isascii()
        assert not set(cursor) & set("+/=?&# ")
        assert decode_cursor(cursor)[1] == job.job_id


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "a",
        "!!!!",
        "not a cursor",
        _b64(b"no separator here"),
        _b64(b"2026-01-01T00:00:00+00:00|not-a-uuid"),
        _b64(b"yesterday|0b0e8f4e-5c1a-4f7e-9d55-3a3f1c2b7e01"),
        _b64(b"\xff\xfe\x00|\x80"),  # not UTF-8
        _b64(b"|"),
    ],
)
def test_a_cursor_this_service_did_not_issue_is_a_malformed_request(cursor: str) -> None:
    with pytest.raises(MalformedRequest):
        decode_cursor(cursor)
