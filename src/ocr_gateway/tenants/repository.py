"""Queries of tenants: their rows, limits and secrets.

Functions take an `AsyncSession` inside a transaction the caller owns, and return plain values.
"""

from __future__ import annotations

import base64
import secrets

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from ocr_gateway.db.models import Tenant


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
