"""The API process's composition root: every long-lived object is built, started and closed here.

Routes never see this object; each takes the one component it needs through `api.deps`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from ocr_gateway.convert.service import ConvertService
from ocr_gateway.core.process_pool import IsolatedPool, ProcessPool, lower_priority
from ocr_gateway.core.settings import Settings
from ocr_gateway.core.tasks import cancel_all, every, supervise
from ocr_gateway.db.engine import SessionFactory, build_engine, build_session_factory
from ocr_gateway.detect.service import DetectService
from ocr_gateway.dispatch.control import DispatchControl
from ocr_gateway.dispatch.dispatcher import Dispatcher
from ocr_gateway.events.hub import EventHub
from ocr_gateway.exports.service import ExportService
from ocr_gateway.jobs.service import JobService
from ocr_gateway.messaging.amqp import Broker
from ocr_gateway.metrics.collectors import StateGauges
from ocr_gateway.rendering.mupdf import warm_up
from ocr_gateway.rendering.service import Renderer
from ocr_gateway.rendering.storage import Storage
from ocr_gateway.results.consumer import ResultsConsumer
from ocr_gateway.storage import ArtefactStore, open_store
from ocr_gateway.tasks.service import TaskService
from ocr_gateway.tenants.keys import KeyRing
from ocr_gateway.tenants.service import TenantService
from ocr_gateway.thumbnails.service import ThumbnailService
from ocr_gateway.uploads.service import UploadService
from ocr_gateway.webhooks.sender import WebhookSender

MAINTENANCE_INTERVAL_S = 10.0


@dataclass(slots=True)
class Components:
    """What the API process runs; `dispatcher` is None when publishing has its own process."""

    settings: Settings
    sessions: SessionFactory
    broker: Broker
    storage: Storage
    # Where every artefact lives (OCR_GATEWAY_STORAGE): local disk or S3.
    store: ArtefactStore
    renderer: Renderer
    uploads: UploadService
    jobs: JobService
    control: DispatchControl
    consumer: ResultsConsumer
    events: EventHub
    exports: ExportService
    keys: KeyRing
    tenants: TenantService
    webhooks: WebhookSender
    tasks: TaskService
    convert: ConvertService
    thumbnails: ThumbnailService
    detect: DetectService
    dispatcher: Dispatcher | None
    # The /metrics gauges read from PostgreSQL and RabbitMQ (at most every few seconds).
    metrics: StateGauges
    background: list[asyncio.Task[Any]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def open_components(settings: Settings, *, run_dispatcher: bool) -> AsyncIterator[Components]:
    """Build every component, start the background loops, and close it all in reverse."""
    storage = Storage(settings)
    await storage.prepare()
    store = open_store(settings)
    await store.prepare()
    engine = build_engine(settings)
    sessions = build_session_factory(engine)
    broker = Broker(settings)
    # A pages queue without priority refuses the start (docs/worker.md, Priority).
    await broker.refuse_mismatched_pages_queue()
    render_pool = ProcessPool(
        "render",
        settings.render_workers,
        initializer=lower_priority,
        initargs=(settings.render_niceness,),
    )
    inspect_pool = IsolatedPool("inspect", settings.inspect_workers)
    # Warm up with a function of the rendering module, so PyMuPDF is loaded before use.
    await asyncio.gather(render_pool.start(warm_up), inspect_pool.start(warm_up))
    renderer = Renderer(settings, sessions, storage, store, render_pool)
    dispatcher = Dispatcher(settings, sessions, broker, store) if run_dispatcher else None
    control = DispatchControl(settings, sessions, broker, dispatcher)
    uploads = UploadService(settings, sessions, storage, renderer, inspect_pool)
    events = EventHub(settings, sessions)
    thumbnails = ThumbnailService(settings, sessions, storage, store, uploads, render_pool)
    await thumbnails.prepare()
    detect = DetectService(settings, sessions, storage, store, uploads)
    components = Components(
        settings=settings,
        sessions=sessions,
        broker=broker,
        storage=storage,
        store=store,
        renderer=renderer,
        uploads=uploads,
        jobs=JobService(settings, sessions, storage, store, renderer, control),
        control=control,
        consumer=ResultsConsumer(settings, sessions, broker, after_result=detect.after_result),
        events=events,
        exports=ExportService(settings, sessions, storage, store, render_pool),
        keys=KeyRing(settings, sessions),
        tenants=TenantService(settings, sessions),
        webhooks=WebhookSender(settings, sessions),
        tasks=TaskService(settings, sessions, storage, uploads, events),
        convert=ConvertService(settings, sessions, storage, store, uploads, render_pool),
        thumbnails=thumbnails,
        detect=detect,
        dispatcher=dispatcher,
        metrics=StateGauges(settings, sessions, broker),
    )
    components.background = _start_background(components)
    try:
        yield components
    finally:
        await cancel_all(components.background)
        if dispatcher is not None:
            await dispatcher.close()
        await control.close()
        await renderer.close()
        await thumbnails.close()
        await broker.close()
        render_pool.shutdown()
        inspect_pool.shutdown()
        await engine.dispose()
        await store.close()


def _start_background(components: Components) -> list[asyncio.Task[Any]]:
    settings, renderer = components.settings, components.renderer
    thumbnails = components.thumbnails
    loops = [
        supervise("results consumer", components.consumer.run),
        supervise("event listener", components.events.listen),
        supervise("webhook sender", components.webhooks.run),
        every(MAINTENANCE_INTERVAL_S, "render recovery", renderer.resume_unfinished),
        every(settings.render_lease_s / 3, "render lease renewal", renderer.renew_render_leases),
        every(MAINTENANCE_INTERVAL_S, "thumbnail recovery", thumbnails.resume_unfinished),
        every(settings.thumbnail_lease_s / 3, "thumbnail lease renewal", thumbnails.renew_leases),
        every(
            max(60.0, settings.orphan_temp_age_s / 4),
            "orphan cleanup",
            components.uploads.remove_orphan_uploads,
        ),
    ]
    if components.dispatcher is not None:
        loops += [
            supervise("dispatcher", components.dispatcher.run),
            supervise("dispatch listener", components.dispatcher.listen),
        ]
    return [asyncio.create_task(loop) for loop in loops]
