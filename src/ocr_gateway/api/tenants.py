"""The operator's routes for clients: API keys under /admin/keys, tenants under /admin/tenants."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from ocr_gateway.api.deps import require_admin_key
from ocr_gateway.api.openapi import errors

router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[Depends(require_admin_key)],
    responses=errors(401),
)
