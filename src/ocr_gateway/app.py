"""The FastAPI application and its lifespan: every long-lived resource is built and closed here."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from ocr_gateway import __version__
from ocr_gateway.api.deps import Services
from ocr_gateway.api.errors import install_error_handlers
from ocr_gateway.api.routes import admin, health, uploads
from ocr_gateway.background import cancel_all, every, supervise
from ocr_gateway.db.session import build_engine, build_session_factory
from ocr_gateway.dispatch.broker import Broker
from ocr_gateway.dispatch.control import DispatchControl
from ocr_gateway.dispatch.dispatcher import Dispatcher
from ocr_gateway.ingest.documents import warm_up
from ocr_gateway.ingest.jobs import JobService
from ocr_gateway.ingest.service import IngestService
from ocr_gateway.ingest.storage import Storage
from ocr_gateway.logging_setup import configure_logging
from ocr_gateway.process_pool import ProcessPool, lower_priority
from ocr_gateway.results.consumer import ResultsConsumer
from ocr_gateway.settings import Settings, get_settings

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
MAINTENANCE_INTERVAL_S = 10.0


def create_app(settings: Settings | None = None, *, run_dispatcher: bool = True) -> FastAPI:
    """The gateway's app. `run_dispatcher=False` leaves publishing to a dispatcher process
    (`ocr-gateway dispatch`, which `serve` starts), so the API's event loop never shares its
    time with publishing; the admin routes signal it through PostgreSQL either way."""
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(settings.logs_dir, settings.log_level)
        storage = Storage(settings)
        await storage.prepare()
        engine = build_engine(settings)
        sessions = build_session_factory(engine)
        broker = Broker(settings)
        render_pool = ProcessPool(
            "render",
            settings.render_workers,
            initializer=lower_priority,
            initargs=(settings.render_niceness,),
        )
        inspect_pool = ProcessPool("inspect", 1)
        # Warm up with a function of the rendering module, so PyMuPDF is loaded before use.
        await asyncio.gather(render_pool.start(warm_up), inspect_pool.start(warm_up))
        ingest = IngestService(settings, sessions, storage, render_pool, inspect_pool)
        dispatcher = Dispatcher(settings, sessions, broker) if run_dispatcher else None
        control = DispatchControl(settings, sessions, broker, dispatcher)
        jobs = JobService(sessions, storage, ingest, control)
        consumer = ResultsConsumer(settings, sessions, broker)
        app.state.services = Services(
            settings=settings,
            sessions=sessions,
            broker=broker,
            storage=storage,
            ingest=ingest,
            jobs=jobs,
            dispatcher=dispatcher,
            control=control,
        )
        app.state.consumer = consumer
        tasks = [
            asyncio.create_task(supervise("results consumer", consumer.run)),
            asyncio.create_task(
                every(MAINTENANCE_INTERVAL_S, "render recovery", ingest.resume_unfinished)
            ),
            asyncio.create_task(
                every(
                    settings.render_lease_s / 3, "render lease renewal", ingest.renew_render_leases
                )
            ),
            asyncio.create_task(
                every(
                    max(60.0, settings.orphan_temp_age_s / 4),
                    "orphan cleanup",
                    ingest.remove_orphan_uploads,
                )
            ),
        ]
        if dispatcher is not None:
            tasks += [
                asyncio.create_task(supervise("dispatcher", dispatcher.run)),
                asyncio.create_task(supervise("dispatch listener", dispatcher.listen)),
            ]
        log.info(
            "ocr-gateway %s started files=%s render_workers=%d dpi=%d dispatcher=%s",
            __version__,
            storage.files_dir,
            settings.render_workers,
            settings.render_dpi,
            "in this process" if dispatcher is not None else "its own process",
        )
        # Start-up's objects live as long as the app: no later collection walks them again.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            log.info("ocr-gateway shutting down")
            await cancel_all(tasks)
            if dispatcher is not None:
                await dispatcher.close()
            await control.close()
            await ingest.close()
            await broker.close()
            render_pool.shutdown()
            inspect_pool.shutdown()
            await engine.dispose()

    app = FastAPI(
        title="ocr-gateway",
        version=__version__,
        description="Upload PDFs and images; their pages are rendered to PNG and fed to OCR "
        "workers over RabbitMQ when an operator starts publishing.",
        lifespan=lifespan,
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    install_error_handlers(app)
    app.include_router(uploads, prefix=API_PREFIX)
    app.include_router(admin, prefix=API_PREFIX)
    app.include_router(health, prefix=API_PREFIX)
    return app
