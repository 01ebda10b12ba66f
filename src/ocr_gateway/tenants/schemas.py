"""Request and response models of the operator's key and tenant routes (`/admin/keys`,
`/admin/tenants`). No model has a field for a key's hash; only `KeyCreated` carries a key, and
only `KeyCreated` and `SecretRotated` a webhook secret."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ocr_gateway.tenants.service import MAX_LABEL_CHARS, MAX_WEIGHT

TENANT_NAME_DOC = "1 to 64 characters of letters, digits, '.', '_' and '-'"
_INT4 = 2**31 - 1


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant: str = Field(description=f"The key's tenant, created if new: {TENANT_NAME_DOC}")
    label: str | None = Field(
        default=None, max_length=MAX_LABEL_CHARS, description="A note for the operator"
    )


class KeyCreated(BaseModel):
    key_id: str
    key: str = Field(description="The key itself: shown this once, only its hash is kept")
    tenant: str
    label: str | None
    created_at: dt.datetime
    webhook_secret: str | None = Field(
        description="The tenant's webhook signing secret when this call created the tenant"
        " (shown this once), else null"
    )


class KeyView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    key_id: str
    tenant: str
    label: str | None
    created_at: dt.datetime
    revoked_at: dt.datetime | None


class KeyList(BaseModel):
    items: list[KeyView]


class TenantLimitsView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    max_pending_pages: int
    uploads_per_minute: int
    max_stored_bytes: int


class TenantView(BaseModel):
    """A tenant's settings; a limit of null takes the default, and `limits` the values in
    force. The webhook secret is never shown here."""

    model_config = ConfigDict(from_attributes=True)

    name: str
    weight: int
    max_pending_pages: int | None
    uploads_per_minute: int | None
    max_stored_bytes: int | None
    callback_url: str | None
    callback_events: Literal["job", "page"]
    created_at: dt.datetime
    updated_at: dt.datetime
    limits: TenantLimitsView


class TenantList(BaseModel):
    items: list[TenantView]


class TenantUpdate(BaseModel):
    """The settings to change; those left out keep their values. A limit set to null goes back
    to the default from settings, and a null `callback_url` removes the tenant's default."""

    model_config = ConfigDict(extra="forbid")

    weight: int | None = Field(
        default=None, ge=1, le=MAX_WEIGHT, description="Share of fair dispatch (not null)"
    )
    max_pending_pages: int | None = Field(default=None, ge=1, le=_INT4)
    uploads_per_minute: int | None = Field(default=None, ge=1, le=_INT4)
    max_stored_bytes: int | None = Field(default=None, ge=1, le=2**63 - 1)
    callback_url: str | None = Field(default=None, description="http(s) URL on a public host")
    callback_events: Literal["job", "page"] | None = Field(
        default=None, description="`job`: the job's end only; `page`: each page's too (not null)"
    )


class SecretRotated(BaseModel):
    tenant: str
    webhook_secret: str = Field(description="The new signing secret, shown this once")
