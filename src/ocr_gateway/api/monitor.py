"""The monitoring page at `/admin/ui` (beside `/docs`: a page, not an API route) and the
admin overview it polls.

The page and its assets are served without a key: they are a sign-in form and a script. Every
piece of data the script shows comes from admin API routes, called with the key the operator
typed, kept in `sessionStorage` and sent as `X-API-Key`; never in a URL.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from ocr_gateway.api.deps import OverviewDep, require_admin_key
from ocr_gateway.api.openapi import errors
from ocr_gateway.monitor.service import Overview

PAGE_URL = "/admin/ui"
STATIC_URL = "/admin/ui/static"
STATIC_DIR = Path(str(files("ocr_gateway.monitor") / "static"))

page_router = APIRouter(include_in_schema=False)

router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[Depends(require_admin_key)],
    responses=errors(401),
)


@page_router.get(PAGE_URL)
async def monitoring_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


@page_router.get(PAGE_URL + "/")
async def monitoring_page_slash() -> RedirectResponse:
    return RedirectResponse(PAGE_URL)


@router.get("/overview", operation_id="admin_overview", response_model=Overview)
async def overview(service: OverviewDep) -> Overview:
    """What the monitoring page polls: the dispatch state and rate limit, the pages and
    results queues' depth and consumers (workers), pages by status, and pages recognised per
    minute over the last hour."""
    return await service.overview()


def install_monitor(app: FastAPI) -> None:
    app.include_router(page_router)
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="monitor-static")
