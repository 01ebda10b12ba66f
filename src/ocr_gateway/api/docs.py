"""`/docs` (Swagger UI) and `/redoc` (ReDoc) served with their scripts from the package, so
they work with no internet access: FastAPI's own pages load them from a public CDN, and an
offline or firewalled user sees a blank page.

The assets come from the `fastapi-offline` wheel, which ships Swagger UI 5 and ReDoc 2 as plain
files (`static/`), is kept up to date with their releases, and needs nothing but FastAPI. Its
`FastAPIOffline` app factory is not used: only its files are, behind pages built here with
FastAPI's `get_swagger_ui_html` and `get_redoc_html`. (`swagger-ui-bundle` was the other
candidate; it ships an older Swagger UI 4 and no ReDoc.)
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs/assets"
ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))
SWAGGER_JS = "swagger-ui-bundle.js"
SWAGGER_CSS = "swagger-ui.css"
REDOC_JS = "redoc.standalone.js"
FAVICON = "favicon.png"

router = APIRouter(include_in_schema=False)


def _asset(request: Request, name: str) -> str:
    return f"{request.scope.get('root_path', '')}{ASSETS_URL}/{name}"


def _openapi_url(request: Request) -> str:
    return f"{request.scope.get('root_path', '')}{request.app.openapi_url}"


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    app: FastAPI = request.app
    return get_swagger_ui_html(
        openapi_url=_openapi_url(request),
        title=f"{app.title} - Swagger UI",
        oauth2_redirect_url=f"{request.scope.get('root_path', '')}/docs/oauth2-redirect",
        swagger_js_url=_asset(request, SWAGGER_JS),
        swagger_css_url=_asset(request, SWAGGER_CSS),
        swagger_favicon_url=_asset(request, FAVICON),
        # No call to the public validator service: the page stays within this server.
        swagger_ui_parameters={"validatorUrl": None, **(app.swagger_ui_parameters or {})},
    )


@router.get("/docs/oauth2-redirect")
async def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    app: FastAPI = request.app
    return get_redoc_html(
        openapi_url=_openapi_url(request),
        title=f"{app.title} - ReDoc",
        redoc_js_url=_asset(request, REDOC_JS),
        redoc_favicon_url=_asset(request, FAVICON),
        with_google_fonts=False,
    )


def install_docs(app: FastAPI) -> None:
    """Serve the assets and the two pages (the app is made with `docs_url=None, redoc_url=None`)."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")
    app.include_router(router)
