"""FastAPI dependencies: each route asks for the one component it uses, and admin routes for
the admin key. The components are built in the app's lifespan (`ocr_gateway.components`)."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from ocr_gateway.components import Components
from ocr_gateway.core.errors import Unauthorized
from ocr_gateway.core.settings import Settings
from ocr_gateway.dispatch.control import DispatchControl
from ocr_gateway.events.hub import EventHub
from ocr_gateway.exports.service import ExportService
from ocr_gateway.jobs.service import JobService
from ocr_gateway.uploads.service import UploadService


def _components(request: Request) -> Components:
    components: Components = request.app.state.components
    return components


def get_settings(request: Request) -> Settings:
    return _components(request).settings


def get_uploads(request: Request) -> UploadService:
    return _components(request).uploads


def get_jobs(request: Request) -> JobService:
    return _components(request).jobs


def get_dispatch_control(request: Request) -> DispatchControl:
    return _components(request).control


def get_events(request: Request) -> EventHub:
    return _components(request).events


def get_exports(request: Request) -> ExportService:
    return _components(request).exports


def get_health_probe(request: Request) -> Components:
    """The health check looks at the database and the broker themselves."""
    return _components(request)


SettingsDep = Annotated[Settings, Depends(get_settings)]
UploadsDep = Annotated[UploadService, Depends(get_uploads)]
JobsDep = Annotated[JobService, Depends(get_jobs)]
DispatchDep = Annotated[DispatchControl, Depends(get_dispatch_control)]
EventsDep = Annotated[EventHub, Depends(get_events)]
ExportsDep = Annotated[ExportService, Depends(get_exports)]
HealthProbeDep = Annotated[Components, Depends(get_health_probe)]

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="AdminApiKey")


def require_admin_key(
    settings: SettingsDep, api_key: Annotated[str | None, Security(_api_key_header)]
) -> None:
    """Admin routes need `X-API-Key` when `OCR_GATEWAY_ADMIN_API_KEY` is set (constant time)."""
    expected = settings.admin_api_key
    if expected is None:
        return
    given = (api_key or "").encode()
    if not secrets.compare_digest(given, expected.get_secret_value().encode()):
        raise Unauthorized("a valid X-API-Key header is required")
