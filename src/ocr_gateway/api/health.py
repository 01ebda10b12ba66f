"""`/health`: liveness, and the readiness of PostgreSQL, RabbitMQ and the artefact store, each
named."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from ocr_gateway import __version__
from ocr_gateway.api.deps import HealthProbeDep
from ocr_gateway.api.schemas import DependencyHealth, Health
from ocr_gateway.db.engine import ping
from ocr_gateway.dispatch.repository import publishing_in_progress

HEALTH_TIMEOUT_S = 3.0

router = APIRouter(tags=["health"])


@router.get("/health", operation_id="health", response_model=Health)
async def get_health(probe: HealthProbeDep) -> Health:
    """Liveness (this answer) and readiness of PostgreSQL, RabbitMQ and the artefact store
    (local folder or S3 bucket), each named."""
    publishing = False
    try:
        async with probe.sessions() as session:
            async with asyncio.timeout(HEALTH_TIMEOUT_S):
                await ping(session)
                publishing = await publishing_in_progress(session)
        database = DependencyHealth(ok=True, detail="reachable")
    except Exception as exc:
        database = DependencyHealth(ok=False, detail=f"{type(exc).__name__}: {exc}"[:300])
    ok, detail = await probe.broker.check()
    rabbitmq = DependencyHealth(ok=ok, detail=detail[:300])
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT_S):
            await probe.store.check()
        storage = DependencyHealth(ok=True, detail=f"{probe.store.backend} reachable")
    except Exception as exc:
        storage = DependencyHealth(ok=False, detail=f"{type(exc).__name__}: {exc}"[:300])
    return Health(
        status="ok" if database.ok and rabbitmq.ok and storage.ok else "degraded",
        version=__version__,
        database=database,
        rabbitmq=rabbitmq,
        storage=storage,
        publishing=publishing,
    )
