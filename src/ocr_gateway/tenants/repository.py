"""Queries of tenants and their API keys: rows, limits, secrets.

Functions take an `AsyncSession` inside a transaction the caller owns, and return plain values.
A key's hash leaves this module only through `key_for_check`, which `KeyRing` uses.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from ocr_gateway.db.models import ApiKey, Tenant

# The columns of a tenant an admin may change (None in a limit: the settings' default).
TENANT_SETTINGS = frozenset(
    {
        "weight",
        "max_pending_pages",
        "uploads_per_minute",
        "max_stored_bytes",
        "callback_url",
        "callback_events",
    }
)


@dataclass(frozen=True, slots=True)
class KeyRow:
    """A key as the admin sees it: never its hash."""

    key_id: str
    tenant: str
    label: str | None
    created_at: dt.datetime
    revoked_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class KeyCheck:
    """What checking a presented key needs."""

    tenant: str
    secret_hash: bytes
    revoked_at: dt.datetime | None


_KEY_COLUMNS = (ApiKey.key_id, ApiKey.tenant, ApiKey.label, ApiKey.created_at, ApiKey.revoked_at)


def new_webhook_secret() -> str:
    """A signing secret as Standard Webhooks writes one: `whsec_` and 32 random bytes, base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


async def ensure_tenant(session: AsyncSession, name: str) -> str | None:
    """Create the tenant if it does not exist; its new webhook secret then, else None."""
    secret = new_webhook_secret()
    created = await session.scalar(
        pg_insert(Tenant)
        .values(name=name, webhook_secret=secret)
        .on_conflict_do_nothing(index_elements=["name"])
        .returning(Tenant.name)
    )
    return secret if created is not None else None


async def add_key(
    session: AsyncSession, *, key_id: str, tenant: str, label: str | None, secret_hash: bytes
) -> KeyRow:
    """Insert a key of an existing tenant."""
    row = (
        await session.execute(
            insert(ApiKey)
            .values(key_id=key_id, tenant=tenant, label=label, secret_hash=secret_hash)
            .returning(*_KEY_COLUMNS)
        )
    ).one()
    return KeyRow(*row)


async def list_keys(session: AsyncSession, *, tenant: str | None) -> list[KeyRow]:
    """Every key (of `tenant`, when one is given), oldest first."""
    stmt = select(*_KEY_COLUMNS).order_by(ApiKey.created_at, ApiKey.key_id)
    if tenant is not None:
        stmt = stmt.where(ApiKey.tenant == tenant)
    return [KeyRow(*row) for row in (await session.execute(stmt)).all()]


async def revoke_key(session: AsyncSession, key_id: str) -> KeyRow | None:
    """Mark the key revoked, now or as it already was; None for an unknown id."""
    row = (
        await session.execute(
            update(ApiKey)
            .where(ApiKey.key_id == key_id)
            .values(revoked_at=func.coalesce(ApiKey.revoked_at, func.now()))
            .returning(*_KEY_COLUMNS)
        )
    ).one_or_none()
    return KeyRow(*row) if row is not None else None


async def key_for_check(session: AsyncSession, key_id: str) -> KeyCheck | None:
    """The tenant, hash and revocation of a key; None for an unknown id."""
    row = (
        await session.execute(
            select(ApiKey.tenant, ApiKey.secret_hash, ApiKey.revoked_at).where(
                ApiKey.key_id == key_id
            )
        )
    ).one_or_none()
    return KeyCheck(*row) if row is not None else None


async def rotate_webhook_secret(session: AsyncSession, name: str) -> str | None:
    """Give the tenant a new webhook secret and return it; None for an unknown tenant."""
    secret = new_webhook_secret()
    updated = await session.scalar(
        update(Tenant)
        .where(Tenant.name == name)
        .values(webhook_secret=secret, updated_at=func.now())
        .returning(Tenant.name)
    )
    return secret if updated is not None else None


async def list_tenants(session: AsyncSession) -> Sequence[Tenant]:
    """Every tenant, by name."""
    return (await session.scalars(select(Tenant).order_by(Tenant.name))).all()


async def get_tenant(session: AsyncSession, name: str) -> Tenant | None:
    return await session.get(Tenant, name)


async def update_tenant(session: AsyncSession, name: str, changes: dict[str, Any]) -> Tenant | None:
    """Set the given settings of the tenant (`TENANT_SETTINGS` only); None if it is unknown."""
    unknown = changes.keys() - TENANT_SETTINGS
    if unknown:
        raise ValueError(f"not a tenant setting: {sorted(unknown)}")
    return await session.scalar(
        update(Tenant)
        .where(Tenant.name == name)
        .values(**changes, updated_at=func.now())
        .returning(Tenant)
        .execution_options(populate_existing=True)
    )
