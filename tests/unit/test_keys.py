"""Client API keys: their shape, the stored hash, and how long an answer is remembered."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ocr_gateway.core.settings import Settings
from ocr_gateway.tenants.keys import (
    CACHE_MAX_ENTRIES,
    KeyRing,
    hash_secret,
    make_key,
    parse_key,
    secret_matches,
)
from ocr_gateway.tenants.repository import KeyCheck


def test_a_new_key_reads_ogw_id_secret_and_only_its_secret_is_hashed() -> None:
    new = make_key()
    assert re.fullmatch(r"[0-9a-f]{16}", new.key_id)
    assert new.key.startswith(f"ogw_{new.key_id}_")
    secret = new.key.removeprefix(f"ogw_{new.key_id}_")
    assert len(secret) == 43
    assert new.secret_hash == hashlib.sha256(secret.encode()).digest()
    assert len(new.secret_hash) == 32
    assert new.key.encode() not in new.secret_hash
    assert parse_key(new.key) == (new.key_id, secret)


def test_keys_are_not_repeated() -> None:
    made = [make_key() for _ in range(200)]
    assert len({k.key_id for k in made}) == len({k.key for k in made}) == 200


def test_a_secret_with_underscores_parses_whole() -> None:
    assert parse_key("ogw_0123456789abcdef_a_b-c_d_e_f_g_h_i_j_k") == (
        "0123456789abcdef",
        "a_b-c_d_e_f_g_h_i_j_k",
    )


@pytest.mark.parametrize(
    "key",
    [
        "",
        "ogw_",
        "s3cret",
        "ogw_0123456789abcdef",
        "ogw_0123456789abcdef_",
        "ogw_0123456789ABCDEF_" + "a" * 43,  # upper-case id
        "ogw_0123456789abcde_" + "a" * 43,  # 15 characters
        "ogx_0123456789abcdef_" + "a" * 43,
        "ogw_0123456789abcdef_" + "a" * 43 + "\n",
        "ogw_0123456789abcdef_" + "a" * 42 + "é",
        "ogw_0123456789abcdef_" + "a" * 500,
        " ogw_0123456789abcdef_" + "a" * 43,
    ],
)
def test_strings_not_shaped_like_a_key_are_refused(key: str) -> None:
    assert parse_key(key) is None


def test_the_secret_is_compared_with_its_hash() -> None:
    stored = hash_secret("right-secret-value")
    assert secret_matches("right-secret-value", stored)
    assert not secret_matches("wrong-secret-value", stored)
    assert not secret_matches("right-secret-value", b"")


class FakeSessions:
    """A session factory whose sessions do nothing: the test replaces the one query."""

    def __call__(self) -> contextlib.AbstractAsyncContextManager[None]:
        @contextlib.asynccontextmanager
        async def session() -> AsyncIterator[None]:
            yield None

        return session()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def rows(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The `api_keys` table as a dict; each lookup of a key id counted in `queries`."""
    table: dict[str, Any] = {"queries": 0}

    async def key_for_check(_session: object, key_id: str) -> KeyCheck | None:
        table["queries"] += 1
        row: KeyCheck | None = table.get(key_id)
        return row

    monkeypatch.setattr("ocr_gateway.tenants.repository.key_for_check", key_for_check)
    return table


@pytest.fixture
def clock() -> Clock:
    return Clock()


def ring(cache_s: float, clock: Clock) -> KeyRing:
    settings = Settings(_env_file=None, api_key_cache_s=cache_s)
    return KeyRing(settings, FakeSessions(), clock=clock)  # type: ignore[arg-type]


async def test_a_key_is_checked_once_per_cache_time_and_a_revoke_is_seen_after_it(
    rows: dict[str, Any], clock: Clock
) -> None:
    new = make_key()
    rows[new.key_id] = KeyCheck("acme", new.secret_hash, None)
    keys = ring(2.0, clock)
    assert await keys.authenticate(new.key) == "acme"
    assert await keys.authenticate(new.key) == "acme"
    assert rows["queries"] == 1
    rows[new.key_id] = KeyCheck("acme", new.secret_hash, dt.datetime.now(dt.UTC))
    clock.now += 1.9
    assert await keys.authenticate(new.key) == "acme", "still within the cache time"
    clock.now += 0.2
    assert await keys.authenticate(new.key) is None
    assert rows["queries"] == 2


async def test_unknown_keys_are_remembered_too_and_malformed_ones_never_queried(
    rows: dict[str, Any], clock: Clock
) -> None:
    keys = ring(2.0, clock)
    unknown = make_key().key
    assert await keys.authenticate(unknown) is None
    assert await keys.authenticate(unknown) is None
    assert rows["queries"] == 1
    assert await keys.authenticate("not-a-key") is None
    assert rows["queries"] == 1


async def test_a_wrong_secret_for_a_known_id_is_refused(rows: dict[str, Any], clock: Clock) -> None:
    new = make_key()
    rows[new.key_id] = KeyCheck("acme", new.secret_hash, None)
    forged = f"ogw_{new.key_id}_" + "A" * 43
    keys = ring(2.0, clock)
    assert await keys.authenticate(forged) is None
    assert await keys.authenticate(new.key) == "acme", "the forgery's answer is not the key's"


async def test_no_cache_time_checks_every_time(rows: dict[str, Any], clock: Clock) -> None:
    new = make_key()
    rows[new.key_id] = KeyCheck("acme", new.secret_hash, None)
    keys = ring(0, clock)
    for _ in range(3):
        assert await keys.authenticate(new.key) == "acme"
    assert rows["queries"] == 3


async def test_the_cache_stays_bounded(
    rows: dict[str, Any], clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ocr_gateway.tenants.keys.CACHE_MAX_ENTRIES", 50)
    keys = ring(5.0, clock)
    for _ in range(120):
        await keys.authenticate(make_key().key)
    assert len(keys._answers) <= 50
    assert CACHE_MAX_ENTRIES >= 1000
