"""Dependencies: the services built in the lifespan, and the admin API-key check."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from ocr_gateway.db.session import SessionFactory
from ocr_gateway.dispatch.broker import Broker
from ocr_gateway.dispatch.control import DispatchControl
from ocr_gateway.dispatch.dispatcher import Dispatcher
from ocr_gateway.errors import Unauthorized
from ocr_gateway.ingest.jobs import JobService
from ocr_gateway.ingest.service import IngestService
from ocr_gateway.ingest.storage import Storage
from ocr_gateway.settings import Settings


@dataclass(frozen=True, slots=True)
class Services:
    """Everything long-lived, built in the lifespan and closed after it."""

    settings: Settings
    sessions: SessionFactory
    broker: Broker
    storage: Storage
    ingest: IngestService
    jobs: JobService
    dispatcher: Dispatcher | None  # None: publishing runs in the dispatcher process
    control: DispatchControl


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="AdminApiKey")


def require_admin_key(
    services: ServicesDep, api_key: Annotated[str | None, Security(_api_key_header)]
) -> None:
    """Admin routes need `X-API-Key` when `OCR_GATEWAY_ADMIN_API_KEY` is set (constant time)."""
    expected = services.settings.admin_api_key
    if expected is None:
        return
    given = (api_key or "").encode()
    if not secrets.compare_digest(given, expected.get_secret_value().encode()):
        raise Unauthorized("a valid X-API-Key header is required")
