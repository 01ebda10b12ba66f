"""The operator's routes for clients: API keys under /admin/keys, tenants under /admin/tenants."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, status

from ocr_gateway.api.deps import TenantsDep, require_admin_key
from ocr_gateway.api.openapi import errors
from ocr_gateway.tenants.schemas import (
    KeyCreate,
    KeyCreated,
    KeyList,
    KeyView,
    SecretRotated,
    TenantList,
    TenantUpdate,
    TenantView,
)

router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[Depends(require_admin_key)],
    responses=errors(401),
)

TenantName = Annotated[
    str, Path(description="The tenant's name: 1 to 64 of [A-Za-z0-9._-]", max_length=200)
]


@router.post(
    "/keys",
    operation_id="admin_create_key",
    status_code=status.HTTP_201_CREATED,
    response_model=KeyCreated,
    responses=errors(422),
)
async def create_key(tenants: TenantsDep, body: KeyCreate) -> KeyCreated:
    """A new client key for the tenant, which is created if it does not exist. The key is in
    this answer only; so is the tenant's webhook secret when the tenant is new."""
    created = await tenants.create_key(tenant=body.tenant, label=body.label)
    return KeyCreated(
        key_id=created.key_id,
        key=created.key,
        tenant=created.tenant,
        label=created.label,
        created_at=created.created_at,
        webhook_secret=created.webhook_secret,
    )


@router.get("/keys", operation_id="admin_list_keys", response_model=KeyList, responses=errors(422))
async def list_keys(
    tenants: TenantsDep,
    tenant: Annotated[
        str | None, Query(max_length=200, description="Only this tenant's keys")
    ] = None,
) -> KeyList:
    """Every key, revoked ones included, oldest first: ids and labels, never the keys."""
    rows = await tenants.list_keys(tenant=tenant)
    return KeyList(items=[KeyView.model_validate(row) for row in rows])


@router.delete(
    "/keys/{key_id}",
    operation_id="admin_revoke_key",
    response_model=KeyView,
    responses=errors(404, 422),
)
async def revoke_key(
    tenants: TenantsDep,
    key_id: Annotated[str, Path(max_length=200, description="The key's id")],
) -> KeyView:
    """Revoke a key: every API process refuses it within API_KEY_CACHE_S (at most 5 s). A
    second revoke answers the same, with the first `revoked_at`."""
    return KeyView.model_validate(await tenants.revoke_key(key_id=key_id))


@router.get(
    "/tenants",
    operation_id="admin_list_tenants",
    response_model=TenantList,
)
async def list_tenants(tenants: TenantsDep) -> TenantList:
    """Every tenant, by name, with its settings and the limits in force."""
    return TenantList(items=[TenantView.model_validate(t) for t in await tenants.list_tenants()])


@router.get(
    "/tenants/{name}",
    operation_id="admin_get_tenant",
    response_model=TenantView,
    responses=errors(404, 422),
)
async def get_tenant(tenants: TenantsDep, name: TenantName) -> TenantView:
    """One tenant's settings and the limits in force."""
    return TenantView.model_validate(await tenants.get_tenant(name=name))


@router.patch(
    "/tenants/{name}",
    operation_id="admin_update_tenant",
    response_model=TenantView,
    responses=errors(404, 422),
)
async def update_tenant(tenants: TenantsDep, name: TenantName, body: TenantUpdate) -> TenantView:
    """Change a tenant's weight, limits or default callback; fields left out are unchanged."""
    changes = body.model_dump(exclude_unset=True)
    return TenantView.model_validate(await tenants.update_tenant(name=name, changes=changes))


@router.post(
    "/tenants/{name}/rotate-secret",
    operation_id="admin_rotate_tenant_secret",
    response_model=SecretRotated,
    responses=errors(404, 422),
)
async def rotate_secret(tenants: TenantsDep, name: TenantName) -> SecretRotated:
    """A new webhook signing secret for the tenant, in this answer only: deliveries sent from
    now on are signed with it."""
    return SecretRotated(tenant=name, webhook_secret=await tenants.rotate_secret(tenant=name))
