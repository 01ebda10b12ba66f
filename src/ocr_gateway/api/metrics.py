"""`GET /metrics`: the API process's metrics in Prometheus' text format, behind the admin key.

At the root, where Prometheus looks by default, beside `/docs` and outside the OpenAPI document
(it is not an API operation). It tells about every tenant's load, so it takes the operator's
key like the admin routes when one is set; Prometheus sends it with `authorization:
{credentials: <key>}` (Bearer). The dispatcher and the workers serve theirs on ports of their
own (`metrics/server.py`).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from ocr_gateway.api.deps import StateGaugesDep, require_admin_key
from ocr_gateway.metrics.server import CONTENT_TYPE, exposition

router = APIRouter(dependencies=[Depends(require_admin_key)], include_in_schema=False)


@router.get("/metrics")
async def metrics(gauges: StateGaugesDep) -> Response:
    """Refresh the database and queue gauges if they are older than the interval, then render."""
    await gauges.refresh()
    return Response(await exposition(), media_type=CONTENT_TYPE)
