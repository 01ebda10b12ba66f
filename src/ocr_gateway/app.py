"""The FastAPI application: its lifespan opens the components, and the routers serve them."""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from ocr_gateway import __version__
from ocr_gateway.api import (
    admin,
    batches,
    convert,
    detect,
    exports,
    health,
    images,
    jobs,
    metrics,
    monitor,
    page_images,
    tasks,
    tenants,
    uploads,
    webhooks,
)
from ocr_gateway.api.docs import install_docs
from ocr_gateway.api.errors import install_error_handlers
from ocr_gateway.api.monitor import install_monitor
from ocr_gateway.components import open_components
from ocr_gateway.core.logging import configure_logging
from ocr_gateway.core.settings import Settings, get_settings
from ocr_gateway.metrics.http import RequestMetrics

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None, *, run_dispatcher: bool = True) -> FastAPI:
    """The gateway's app. `run_dispatcher=False` leaves publishing to a dispatcher process
    (`ocr-gateway dispatch`, which `ocr-gateway run` starts), so the API's event loop never
    shares its time with publishing; the admin routes signal it through PostgreSQL either way."""
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.logs_dir, settings.log_level)
        async with open_components(settings, run_dispatcher=run_dispatcher) as components:
            app.state.components = components
            log.info(
                "ocr-gateway %s started storage=%s render_workers=%d dpi=%d dispatcher=%s",
                __version__,
                components.store,
                settings.render_workers,
                settings.render_dpi,
                "in this process" if components.dispatcher is not None else "its own process",
            )
            # Start-up's objects live as long as the app: no later collection walks them again.
            gc.collect()
            gc.freeze()
            yield
            log.info("ocr-gateway shutting down")

    app = FastAPI(
        title="ocr-gateway",
        version=__version__,
        description="Upload PDFs and images; their pages are rendered to PNG and fed to OCR "
        "workers over RabbitMQ when an operator starts publishing.",
        lifespan=lifespan,
        # Served by `install_docs` with assets from the package, not from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    install_error_handlers(app)
    # Counts and times every request by route template (README, "Metrics").
    app.add_middleware(RequestMetrics)
    app.include_router(uploads.router, prefix=API_PREFIX)
    app.include_router(jobs.router, prefix=API_PREFIX)
    app.include_router(exports.router, prefix=API_PREFIX)
    app.include_router(batches.router, prefix=API_PREFIX)
    app.include_router(admin.router, prefix=API_PREFIX)
    app.include_router(tenants.router, prefix=API_PREFIX)
    app.include_router(webhooks.router, prefix=API_PREFIX)
    app.include_router(health.router, prefix=API_PREFIX)
    app.include_router(tasks.router, prefix=API_PREFIX)
    app.include_router(convert.router, prefix=API_PREFIX)
    # The detect-first contract's own root paths, `/v1/ocr/jobs` (docs/detect.md).
    app.include_router(detect.router)
    # The paths that clients of the Celery-based OCR API call, with the same handlers; the
    # OpenAPI document lists these operations once, under /api/v1 (`tasks.root_router`).
    app.include_router(tasks.root_router)
    # The thumbnail service's `/images`, likewise at the root paths its clients call.
    app.include_router(images.router, prefix=API_PREFIX)
    app.include_router(images.root_router)
    app.include_router(monitor.router, prefix=API_PREFIX)
    # Page images for OCR workers, by the signed URL in a page message (no key: the signature).
    app.include_router(page_images.router, prefix=API_PREFIX)
    # The monitoring page at /admin/ui, beside /docs (api/monitor.py).
    install_monitor(app)
    # GET /metrics at the root, where Prometheus looks, behind the admin key (api/metrics.py).
    app.include_router(metrics.router)
    install_docs(app)
    return app
