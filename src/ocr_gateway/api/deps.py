"""FastAPI dependencies: each route asks for the one component it uses, and admin routes for
the admin key. The components are built in the app's lifespan (`ocr_gateway.components`)."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Header, Request, Security, WebSocket
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from ocr_gateway.components import Components
from ocr_gateway.convert.service import ConvertService
from ocr_gateway.core.errors import Forbidden, Unauthorized
from ocr_gateway.core.settings import Settings
from ocr_gateway.detect.service import DetectService
from ocr_gateway.dispatch.control import DispatchControl
from ocr_gateway.events.hub import EventHub
from ocr_gateway.exports.service import ExportService
from ocr_gateway.jobs.service import JobService
from ocr_gateway.metrics.collectors import StateGauges
from ocr_gateway.monitor.service import OverviewService
from ocr_gateway.storage import ArtefactStore
from ocr_gateway.tasks.service import TaskService
from ocr_gateway.tenants.access import Caller, check_tenant_name
from ocr_gateway.tenants.keys import KeyRing
from ocr_gateway.tenants.service import TenantService
from ocr_gateway.thumbnails.service import ThumbnailService
from ocr_gateway.uploads.service import UploadService
from ocr_gateway.webhooks.sender import WebhookSender


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


def get_keys(request: Request) -> KeyRing:
    return _components(request).keys


def get_tenants(request: Request) -> TenantService:
    return _components(request).tenants


def get_webhooks(request: Request) -> WebhookSender:
    return _components(request).webhooks


def get_tasks(request: Request) -> TaskService:
    return _components(request).tasks


def get_thumbnails(request: Request) -> ThumbnailService:
    return _components(request).thumbnails


def get_convert(request: Request) -> ConvertService:
    return _components(request).convert


def get_state_gauges(request: Request) -> StateGauges:
    return _components(request).metrics


def get_overview(request: Request) -> OverviewService:
    """The monitoring page's overview: a few queries and two passive declares, made per call."""
    components = _components(request)
    return OverviewService(components.settings, components.sessions, components.broker)


def get_detect(request: Request) -> DetectService:
    return _components(request).detect


def get_store(request: Request) -> ArtefactStore:
    return _components(request).store


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
OverviewDep = Annotated[OverviewService, Depends(get_overview)]
KeysDep = Annotated[KeyRing, Depends(get_keys)]
WebhooksDep = Annotated[WebhookSender, Depends(get_webhooks)]
TenantsDep = Annotated[TenantService, Depends(get_tenants)]
TasksDep = Annotated[TaskService, Depends(get_tasks)]
ConvertDep = Annotated[ConvertService, Depends(get_convert)]
ThumbnailsDep = Annotated[ThumbnailService, Depends(get_thumbnails)]
StateGaugesDep = Annotated[StateGauges, Depends(get_state_gauges)]
StoreDep = Annotated[ArtefactStore, Depends(get_store)]
DetectDep = Annotated[DetectService, Depends(get_detect)]

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="ApiKey")
_bearer = HTTPBearer(auto_error=False, scheme_name="Bearer")
ApiKeyHeaderDep = Annotated[str | None, Security(_api_key_header)]
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]


def _presented_key(api_key: str | None, bearer: HTTPAuthorizationCredentials | None) -> str:
    """The key a request carries, from `Authorization: Bearer` or `X-API-Key`; "" if none."""
    if bearer is not None and bearer.credentials:
        return bearer.credentials
    return api_key or ""


def _is_admin_key(settings: Settings, key: str) -> bool:
    expected = settings.admin_api_key
    return expected is not None and secrets.compare_digest(
        key.encode(), expected.get_secret_value().encode()
    )


def require_admin_key(settings: SettingsDep, api_key: ApiKeyHeaderDep, bearer: BearerDep) -> None:
    """Admin routes need the operator's key (`X-API-Key` or `Authorization: Bearer`) when
    `OCR_GATEWAY_ADMIN_API_KEY` is set; a client's key never opens them."""
    if settings.admin_api_key is None:
        return
    if not _is_admin_key(settings, _presented_key(api_key, bearer)):
        raise Unauthorized("the operator's API key is required (X-API-Key)")


async def resolve_caller(
    settings: Settings, keys: KeyRing, *, key: str, tenant_header: str | None
) -> Caller:
    """The tenant a client route acts for (README, "Running it for many clients"), from the key
    presented ("" if none) and the `X-Tenant-Id` header.

    `client_auth=off`: the `X-Tenant-Id` header, or `default`. `api_key`: the key's tenant
    (401 without a valid key, 403 when `X-Tenant-Id` names another). The operator's key works
    on client routes too and sees every tenant, or the one `X-Tenant-Id` names.
    """
    named = check_tenant_name(tenant_header) if tenant_header is not None else None
    if key and _is_admin_key(settings, key):
        return Caller(tenant=named, sees_all=False) if named else Caller(sees_all=True)
    if settings.client_auth == "off":
        return Caller(tenant=named) if named else Caller()
    tenant = await keys.authenticate(key) if key else None
    if tenant is None:
        raise Unauthorized(
            "a valid API key is required (Authorization: Bearer <key>, or X-API-Key)"
        )
    if named is not None and named != tenant:
        raise Forbidden(f"this key belongs to another tenant than {named!r}")
    return Caller(tenant=tenant)


async def get_caller(
    settings: SettingsDep,
    keys: KeysDep,
    api_key: ApiKeyHeaderDep,
    bearer: BearerDep,
    x_tenant_id: Annotated[
        str | None,
        Header(description="The tenant to act for; with an API key, it must be the key's own."),
    ] = None,
) -> Caller:
    """The caller of a client route (`resolve_caller`)."""
    return await resolve_caller(
        settings, keys, key=_presented_key(api_key, bearer), tenant_header=x_tenant_id
    )


async def websocket_caller(websocket: WebSocket) -> Caller:
    """The caller of a websocket, from its handshake's headers, by the rules of `get_caller`:
    a websocket route answers its errors with a close code, not through the error handler."""
    components: Components = websocket.app.state.components
    scheme, _, credentials = websocket.headers.get("authorization", "").partition(" ")
    bearer = credentials.strip() if scheme.lower() == "bearer" else ""
    return await resolve_caller(
        components.settings,
        components.keys,
        key=bearer or websocket.headers.get("x-api-key", ""),
        tenant_header=websocket.headers.get("x-tenant-id"),
    )


CallerDep = Annotated[Caller, Depends(get_caller)]
