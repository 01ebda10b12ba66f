"""Managing tenants and their API keys, for the admin routes and the `ocr-gateway keys` and
`ocr-gateway tenants` commands alike.

A key is shown once, when it is made; a tenant's webhook secret once when the tenant is made
and once at each rotation. Nothing here returns a key's hash.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ocr_gateway.core.errors import InvalidField, NotFound
from ocr_gateway.core.settings import Settings
from ocr_gateway.db.engine import SessionFactory
from ocr_gateway.db.models import CallbackEvents, Tenant
from ocr_gateway.tenants import repository as repo
from ocr_gateway.tenants.access import check_tenant_name
from ocr_gateway.tenants.keys import make_key, parse_key
from ocr_gateway.tenants.quotas import resolve_limits
from ocr_gateway.tenants.repository import KeyRow
from ocr_gateway.webhooks.guard import check_callback_url

MAX_LABEL_CHARS = 200
# A key id is 16 hex characters; one that is not cannot name a key.
MAX_KEY_ID_CHARS = 32
# The largest value each number may take: the column's own range (a weight beyond this would
# only starve every other tenant).
MAX_WEIGHT = 1000
_INT4 = 2**31 - 1
_LIMITS = {"max_pending_pages": _INT4, "uploads_per_minute": _INT4, "max_stored_bytes": 2**63 - 1}


@dataclass(frozen=True, slots=True)
class CreatedKey:
    """A new key: `key` is shown this once, and `webhook_secret` only if the tenant is new."""

    key_id: str
    key: str
    tenant: str
    label: str | None
    created_at: dt.datetime
    webhook_secret: str | None


@dataclass(frozen=True, slots=True)
class TenantLimits:
    max_pending_pages: int
    uploads_per_minute: int
    max_stored_bytes: int


@dataclass(frozen=True, slots=True)
class TenantInfo:
    """A tenant as the admin sees it: its own overrides (None: the default) and the limits in
    force. Never its webhook secret."""

    name: str
    weight: int
    max_pending_pages: int | None
    uploads_per_minute: int | None
    max_stored_bytes: int | None
    callback_url: str | None
    callback_events: str
    created_at: dt.datetime
    updated_at: dt.datetime
    limits: TenantLimits


class TenantService:
    def __init__(self, settings: Settings, sessions: SessionFactory) -> None:
        self.settings = settings
        self.sessions = sessions

    async def create_key(self, *, tenant: str, label: str | None = None) -> CreatedKey:
        """A new key for `tenant`, creating the tenant if it does not exist yet."""
        check_tenant_name(tenant)
        if label is not None and (len(label) > MAX_LABEL_CHARS or not label.isprintable()):
            raise InvalidField(f"a label is at most {MAX_LABEL_CHARS} printable characters")
        new = make_key()
        async with self.sessions.begin() as session:
            secret = await repo.ensure_tenant(session, tenant)
            row = await repo.add_key(
                session, key_id=new.key_id, tenant=tenant, label=label, secret_hash=new.secret_hash
            )
        return CreatedKey(
            key_id=row.key_id,
            key=new.key,
            tenant=row.tenant,
            label=row.label,
            created_at=row.created_at,
            webhook_secret=secret,
        )

    async def list_keys(self, *, tenant: str | None = None) -> list[KeyRow]:
        """Every key, or those of `tenant`, oldest first."""
        if tenant is not None:
            check_tenant_name(tenant)
        async with self.sessions() as session:
            return await repo.list_keys(session, tenant=tenant)

    async def revoke_key(self, *, key_id: str) -> KeyRow:
        """Revoke the key (a second revoke changes nothing). A whole key is taken for its id."""
        parsed = parse_key(key_id)
        if parsed is not None:
            key_id = parsed[0]
        row = None
        if len(key_id) <= MAX_KEY_ID_CHARS:
            async with self.sessions.begin() as session:
                row = await repo.revoke_key(session, key_id)
        if row is None:
            raise NotFound(f"no API key {key_id[:MAX_KEY_ID_CHARS]!r}")
        return row

    async def rotate_secret(self, *, tenant: str) -> str:
        """A new webhook signing secret for the tenant, replacing the old one at once."""
        check_tenant_name(tenant)
        async with self.sessions.begin() as session:
            secret = await repo.rotate_webhook_secret(session, tenant)
        if secret is None:
            raise NotFound(f"no tenant {tenant!r}")
        return secret

    async def list_tenants(self) -> list[TenantInfo]:
        async with self.sessions() as session:
            tenants = await repo.list_tenants(session)
        return [self._info(tenant) for tenant in tenants]

    async def get_tenant(self, *, name: str) -> TenantInfo:
        check_tenant_name(name)
        async with self.sessions() as session:
            tenant = await repo.get_tenant(session, name)
        if tenant is None:
            raise NotFound(f"no tenant {name!r}")
        return self._info(tenant)

    async def update_tenant(self, *, name: str, changes: Mapping[str, Any]) -> TenantInfo:
        """Change some of the tenant's settings: `weight` (at least 1), the limits (at least 1,
        or None for the settings' default), `callback_url` (None removes it) and
        `callback_events` (`job` or `page`). Settings not named keep their values."""
        check_tenant_name(name)
        values = await self._checked_changes(changes)
        async with self.sessions.begin() as session:
            tenant = (
                await repo.update_tenant(session, name, values)
                if values
                else await repo.get_tenant(session, name)
            )
        if tenant is None:
            raise NotFound(f"no tenant {name!r}")
        return self._info(tenant)

    async def _checked_changes(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        unknown = changes.keys() - repo.TENANT_SETTINGS
        if unknown:
            raise InvalidField(f"not a tenant setting: {', '.join(sorted(unknown))}")
        values = dict(changes)
        if "weight" in values and not _in_range(values["weight"], MAX_WEIGHT):
            raise InvalidField(f"weight must be a whole number from 1 to {MAX_WEIGHT}")
        for limit, highest in _LIMITS.items():
            value = values.get(limit)
            if value is not None and not _in_range(value, highest):
                raise InvalidField(f"{limit} must be from 1 to {highest}, or null for the default")
        if "callback_events" in values:
            if values["callback_events"] not in tuple(CallbackEvents):
                raise InvalidField("callback_events must be 'job' or 'page'")
            values["callback_events"] = CallbackEvents(values["callback_events"]).value
        if values.get("callback_url") is not None:
            url = values["callback_url"]
            if not isinstance(url, str) or not url.isprintable():
                raise InvalidField("callback_url must be a URL")
            values["callback_url"] = await check_callback_url(url, self.settings)
        return values

    def _info(self, tenant: Tenant) -> TenantInfo:
        limits = resolve_limits(self.settings, tenant)
        return TenantInfo(
            name=tenant.name,
            weight=tenant.weight,
            max_pending_pages=tenant.max_pending_pages,
            uploads_per_minute=tenant.uploads_per_minute,
            max_stored_bytes=tenant.max_stored_bytes,
            callback_url=tenant.callback_url,
            callback_events=tenant.callback_events,
            created_at=tenant.created_at,
            updated_at=tenant.updated_at,
            limits=TenantLimits(
                max_pending_pages=limits.max_pending_pages,
                uploads_per_minute=limits.uploads_per_minute,
                max_stored_bytes=limits.max_stored_bytes,
            ),
        )


def _in_range(value: object, highest: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= highest
