"""`ocr-gateway run`: the API, one dispatcher and N OCR workers, kept running, stopped in order.

The order of the stop is the order of the data: the API first (it stops taking uploads and admin
calls), then the dispatcher (its in-flight publishes settle and are recorded; every other page
it holds goes back to pending), then the workers (pages in flight finish, or stay unacked for
RabbitMQ to redeliver). Each gets one SIGTERM and is killed only after its own grace.
"""

from __future__ import annotations

import logging
import os
import sys

from ocr_gateway.core.logging import FORMAT, DailyFileHandler
from ocr_gateway.core.settings import Settings
from ocr_gateway.launcher.children import (
    Child,
    start_api,
    start_dispatcher,
    start_worker,
    stop_children,
)
from ocr_gateway.launcher.supervisor import Supervisor

log = logging.getLogger(__name__)

# `serve` lets open connections finish for 20 s (cli.py); each process gets this much more
# beyond its own graceful stop before it is killed.
API_SHUTDOWN_S = 20.0
KILL_AFTER_S = 10.0


def run_gateway(settings: Settings, *, host: str, port: int, workers: int) -> int:
    """Run the gateway's processes until SIGTERM, SIGINT or SIGHUP; returns the exit code."""
    _log_to_console_and_file(settings)
    if settings.public_url is None:
        # The dispatcher signs page URLs for this API (MESSAGE_IMAGES=url): the children
        # inherit the address it really listens on, which --host and --port may have changed.
        listening = settings.model_copy(update={"host": host, "port": port})
        os.environ["OCR_GATEWAY_PUBLIC_URL"] = listening.gateway_url
    supervisor: Supervisor[Child] = Supervisor()
    supervisor.add(
        "API",
        lambda: start_api(host, port),
        grace=API_SHUTDOWN_S + KILL_AFTER_S,
        stop=stop_children,
    )
    supervisor.add(
        "dispatcher",
        start_dispatcher,
        grace=settings.publish_timeout_s + KILL_AFTER_S,
        stop=stop_children,
    )
    supervisor.add(
        "OCR worker",
        start_worker,
        count=workers,
        grace=settings.ocr_stop_grace_s + KILL_AFTER_S,
        stop=stop_children,
    )
    # Where the operator looks first (README, "Monitoring page").
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    log.info("monitoring page: http://%s:%d/admin/ui  (API docs: /docs)", shown, port)
    return supervisor.run()


def _log_to_console_and_file(settings: Settings) -> None:
    """Like every other process (stderr and `logs/<date>.log`), but written from this thread:
    the launcher keeps a single thread (see `lifetime.py`)."""
    formatter = logging.Formatter(FORMAT)
    root = logging.getLogger()
    root.handlers = []
    for handler in (logging.StreamHandler(sys.stderr), DailyFileHandler(settings.logs_dir)):
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
