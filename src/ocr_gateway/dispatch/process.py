"""`ocr-gateway dispatch`: the dispatcher in a process of its own.

`ocr-gateway run` starts one beside the API (docker-compose runs it as a service of its own),
so publishing (a core's worth of work at a thousand pages a second) never shares the API's event
loop: an admin call or an upload does not wait behind page bodies. Starts and stops reach it
through PostgreSQL (rows plus NOTIFY), as they reach every dispatcher. More than one may run, on
any machine: claims are SKIP LOCKED under leases.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal

from ocr_gateway.core.logging import configure_logging
from ocr_gateway.core.process_pool import lower_priority
from ocr_gateway.core.settings import Settings
from ocr_gateway.core.tasks import cancel_all, supervise
from ocr_gateway.db.engine import build_engine, build_session_factory
from ocr_gateway.dispatch.dispatcher import Dispatcher
from ocr_gateway.messaging.amqp import Broker, PagesQueueMismatch
from ocr_gateway.metrics.server import serve_metrics
from ocr_gateway.storage import open_store

log = logging.getLogger(__name__)

DISPATCH_DB_POOL = 4


def run_dispatcher(settings: Settings) -> int:
    """Publish until SIGTERM or SIGINT, then settle what is in flight; returns the exit code."""
    configure_logging(settings.logs_dir, settings.log_level)
    # Publishing saturates the CPU it is given; admin calls and uploads are served first.
    lower_priority(settings.dispatch_niceness)
    return asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    engine = build_engine(settings, pool_size=DISPATCH_DB_POOL)
    broker = Broker(settings)
    try:
        await broker.refuse_mismatched_pages_queue()
    except PagesQueueMismatch:
        # The broker logged the migration; a dispatcher must not publish into this queue.
        await engine.dispose()
        return 2
    store = open_store(settings)
    await store.prepare()
    dispatcher = Dispatcher(settings, build_session_factory(engine), broker, store)
    tasks = [
        asyncio.create_task(supervise("dispatcher", dispatcher.run)),
        asyncio.create_task(supervise("dispatch listener", dispatcher.listen)),
    ]
    # What start-up built lives as long as the process: keep it out of every later collection,
    # so the collection a stopped publishing run asks for costs microseconds, not 50 ms.
    metrics_server = await serve_metrics(settings.metrics_host, settings.dispatch_metrics_port)
    gc.collect()
    gc.freeze()
    log.info("dispatcher started pid=%d queue=%s", os.getpid(), settings.pages_queue)
    try:
        await stop.wait()
    finally:
        log.info("dispatcher stopping")
        if metrics_server is not None:
            metrics_server.close()
        await cancel_all(tasks)
        # In-flight publishes settle and are recorded; every other held page goes back to
        # pending, so the next dispatcher publishes it.
        await dispatcher.close()
        await broker.close()
        await engine.dispose()
        await store.close()
        log.info("dispatcher stopped")
    return 0
