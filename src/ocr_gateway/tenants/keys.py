"""Client API keys: made, hashed, checked, and cached for at most `API_KEY_CACHE_S`.

A key reads `ogw_<key_id>_<secret>`: the id (16 lowercase hex characters) finds its row, and
only the SHA-256 of the secret is stored. The secret is 32 random bytes, so a fast hash is
enough: nobody can guess their way to a preimage, and every request pays for one hash only.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from ocr_gateway.core.settings import Settings
from ocr_gateway.db.engine import SessionFactory
from ocr_gateway.tenants import repository as repo

KEY_PREFIX = "ogw_"
KEY_ID_BYTES = 8
# `secrets.token_urlsafe(32)` gives 43 characters; anything far longer is not one of ours.
_KEY = re.compile(r"ogw_([0-9a-f]{16})_([A-Za-z0-9_-]{16,128})")
# Answers remembered per process; past this many, the oldest are dropped first.
CACHE_MAX_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just made: `key` is shown once; only `secret_hash` is stored."""

    key_id: str
    key: str
    secret_hash: bytes


def hash_secret(secret: str) -> bytes:
    """The SHA-256 of a key's secret part, as stored in `api_keys.secret_hash`."""
    return hashlib.sha256(secret.encode("ascii")).digest()


def make_key() -> NewKey:
    """A new random key, its id and the hash of its secret."""
    key_id = secrets.token_hex(KEY_ID_BYTES)
    secret = secrets.token_urlsafe(32)
    return NewKey(
        key_id=key_id, key=f"{KEY_PREFIX}{key_id}_{secret}", secret_hash=hash_secret(secret)
    )


def parse_key(key: str) -> tuple[str, str] | None:
    """`(key_id, secret)` of a string shaped like a key; None for any other string."""
    match = _KEY.fullmatch(key)
    return (match[1], match[2]) if match else None


def secret_matches(secret: str, stored_hash: bytes) -> bool:
    """Whether `secret` hashes to `stored_hash`, compared in constant time."""
    return hmac.compare_digest(hash_secret(secret), stored_hash)


class KeyRing:
    """Checks client keys against `api_keys`, remembering each answer for a short while.

    The memory is this process's own: a revoked key is refused by every API process at most
    `API_KEY_CACHE_S` (5 s at most) after the revoke, and an unknown key costs one query per
    that time, not one per request.
    """

    def __init__(
        self,
        settings: Settings,
        sessions: SessionFactory,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.clock = clock
        # SHA-256 of the whole key → (tenant or None, monotonic time the answer expires).
        self._answers: dict[bytes, tuple[str | None, float]] = {}

    async def authenticate(self, key: str) -> str | None:
        """The tenant of a valid, unrevoked key; None for any other string."""
        parsed = parse_key(key)
        if parsed is None:
            return None
        key_id, secret = parsed
        ttl = self.settings.api_key_cache_s
        cache_key = hashlib.sha256(key.encode("ascii")).digest()
        now = self.clock()
        if ttl > 0:
            remembered = self._answers.get(cache_key)
            if remembered is not None and remembered[1] > now:
                return remembered[0]
        async with self.sessions() as session:
            row = await repo.key_for_check(session, key_id)
        tenant = (
            row.tenant
            if row is not None
            and row.revoked_at is None
            and secret_matches(secret, row.secret_hash)
            else None
        )
        if ttl > 0:
            self._remember(cache_key, tenant, now + ttl, now)
        return tenant

    def _remember(self, cache_key: bytes, tenant: str | None, expires: float, now: float) -> None:
        answers = self._answers
        answers.pop(cache_key, None)
        if len(answers) >= CACHE_MAX_ENTRIES:
            for stale in [k for k, (_, until) in answers.items() if until <= now]:
                del answers[stale]
            while len(answers) >= CACHE_MAX_ENTRIES:
                del answers[next(iter(answers))]
        answers[cache_key] = (tenant, expires)
