"""The operator's routes for webhook deliveries: list them, send one again."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from ocr_gateway.api.deps import WebhooksDep, require_admin_key
from ocr_gateway.api.openapi import errors
from ocr_gateway.db.models import TENANT_NAME_PATTERN, DeliveryStatus
from ocr_gateway.webhooks.schemas import DeliveryList, DeliveryView

router = APIRouter(
    prefix="/admin/webhooks",
    tags=["admin"],
    dependencies=[Depends(require_admin_key)],
    responses=errors(401),
)


@router.get(
    "",
    operation_id="admin_list_webhook_deliveries",
    response_model=DeliveryList,
    responses=errors(400, 422),
)
async def list_deliveries(
    webhooks: WebhooksDep,
    status: Annotated[
        DeliveryStatus | None,
        Query(description="pending (due or retrying), delivered, or failed (gave up)"),
    ] = None,
    tenant: Annotated[
        str | None, Query(pattern=TENANT_NAME_PATTERN, description="Only this tenant's")
    ] = None,
    job_id: Annotated[uuid.UUID | None, Query(description="Only this job's")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[
        str | None, Query(max_length=200, description="next_cursor of the previous page")
    ] = None,
) -> DeliveryList:
    """Webhook deliveries, newest first: `?status=failed` lists those that gave up."""
    page = await webhooks.list_deliveries(
        status=status, tenant=tenant, job_id=job_id, limit=limit, cursor=cursor
    )
    return DeliveryList(
        items=[DeliveryView.model_validate(item) for item in page.items],
        next_cursor=page.next_cursor,
        limit=limit,
    )


@router.post(
    "/{delivery_id}/redeliver",
    operation_id="admin_redeliver_webhook",
    response_model=DeliveryView,
    responses=errors(404, 422),
)
async def redeliver(
    webhooks: WebhooksDep,
    delivery_id: Annotated[int, Path(ge=1, le=2**63 - 1, description="The delivery's id")],
) -> DeliveryView:
    """Send a delivery again, now, from a first attempt (it may have failed or been
    delivered): the same body and `webhook-id`, signed with the tenant's current secret."""
    return DeliveryView.model_validate(await webhooks.redeliver(delivery_id))
