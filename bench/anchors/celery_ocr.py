"""The anchor of section 11: a minimal Celery + Redis OCR app, the stack the one-call API replaces.

One task, `bench.ocr`: base64 in, the worker's own engine (`ocr_gateway.worker.engine`, built
once per Celery process, warm from its first call), text out. Both sides configure it from the
environment, so the worker is started as Celery's users start theirs:

    BENCH_CELERY_URL=redis://127.0.0.1:6379/11 BENCH_CELERY_QUEUE=bench-ocr \\
        celery -A bench.anchors.celery_ocr worker --pool prefork --concurrency 1 -Q bench-ocr

`BENCH_OCR_THREADS` sets onnxruntime's threads per process, as the gateway's worker sizes them
(the cores shared between its OCR processes).
"""

from __future__ import annotations

import base64
import os
from typing import Any

from celery import Celery  # type: ignore[import-untyped]

from ocr_gateway.worker.engine import OcrEngine, build_engine

TASK_NAME = "bench.ocr"
URL_ENV = "BENCH_CELERY_URL"
QUEUE_ENV = "BENCH_CELERY_QUEUE"
THREADS_ENV = "BENCH_OCR_THREADS"
DEFAULT_URL = "redis://127.0.0.1:6379/11"
DEFAULT_QUEUE = "bench-ocr"
RESULT_TTL_S = 600

_engine: OcrEngine | None = None


def ocr_image(image_base64: str) -> str:
    """What a Celery OCR task does: decode the base64 image, OCR it, return the text."""
    global _engine
    if _engine is None:
        _engine = build_engine("rapidocr", int(os.environ.get(THREADS_ENV, "1")))
    return _engine.recognize(base64.b64decode(image_base64, validate=True)).text


def make_app(url: str, queue: str) -> Any:
    """The app and its one task (`app.tasks[TASK_NAME]`), on Redis as broker and result store."""
    celery = Celery("bench_ocr", broker=url, backend=url)
    celery.conf.update(
        task_default_queue=queue,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=RESULT_TTL_S,
        worker_prefetch_multiplier=1,  # a process holds one image at a time, as the gateway's
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    celery.task(name=TASK_NAME)(ocr_image)
    return celery


app = make_app(os.environ.get(URL_ENV, DEFAULT_URL), os.environ.get(QUEUE_ENV, DEFAULT_QUEUE))
