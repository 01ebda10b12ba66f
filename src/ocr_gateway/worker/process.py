"""OCR off the event loop: a `spawn` process pool whose processes each build the engine once.

OCR is CPU-bound and takes seconds per page, so it runs in `ocr_processes` processes. They are
spawned, not forked, so no event loop or AMQP connection is ever copied into them; each loads
the models once in its initializer. A process that dies (a crash, the OOM killer) breaks the
pool, which is then rebuilt; one that runs over the page timeout is killed the same way.
A page that asks for its tables has them found in the same call, on the same image, filled
from the boxes the OCR just read (`tables/image.py`), so the page is decoded and read once.
Each OCR process is killed by the kernel when the worker that started it is gone (a parent-death
signal, see `launcher/lifetime.py`), so a killed worker leaves no orphan burning a core.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging
import os
import signal

from ocr_gateway.core.process_pool import ProcessPool
from ocr_gateway.launcher.lifetime import end_with_parent
from ocr_gateway.worker.engine import OcrEngine, build_engine
from ocr_gateway.worker.layout import OcrOutput

log = logging.getLogger(__name__)

START_TIMEOUT_S = 300.0  # loading the models can be slow on a busy machine

_engine: OcrEngine | None = None


class PageImageInvalid(Exception):
    """The message's image is not base64 or not an image: a failed page, not a crash."""


def threads_per_process(processes: int) -> int:
    """Share the cores this worker may run on between its OCR processes."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // processes)


# ---------------------------------------------------------------- inside the OCR processes


def init_process(engine_name: str, threads: int, parent_pid: int) -> None:
    """Pool initializer: end with the worker, load models (Ctrl-C is ignored by every pool).

    SIGKILL, as the process holds nothing to finish once its worker is gone. The pool grows from
    the worker's event loop thread, which lives as long as the worker."""
    global _engine
    end_with_parent(parent_pid, signal.SIGKILL)
    _limit_opencv_threads(threads)
    _engine = build_engine(engine_name, threads)


def _limit_opencv_threads(threads: int) -> None:
    """OpenCV (under RapidOCR and the table finder) starts a thread per core by default; keep
    each OCR process to its share, as onnxruntime is."""
    try:
        import cv2
    except ImportError:  # the tesseract engine without the ocr extra
        return
    cv2.setNumThreads(threads)


def engine_name() -> str:
    """Run once per process at start-up: proves the initializer ran and the models loaded."""
    if _engine is None:
        raise RuntimeError("the OCR engine was not initialised")
    return _engine.name


def loaded_engine() -> OcrEngine:
    """This OCR process's engine (for the `detect` and `recognize` tasks, worker/regions.py)."""
    if _engine is None:
        raise RuntimeError("the OCR engine was not initialised")
    return _engine


def recognize_page(image_base64: str, tables: bool = False) -> OcrOutput:
    """Decode the page message's image and OCR it; with `tables`, find its tables too.

    Finding tables is an addition to the text: if it fails, the page keeps its text, its
    `tables` stay None and the error is logged."""
    if _engine is None:
        raise RuntimeError("the OCR engine was not initialised")
    try:
        png = base64.b64decode(image_base64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PageImageInvalid(f"image_base64 is not valid base64: {exc}") from exc
    try:
        output = _engine.recognize(png)
    except (OSError, SyntaxError) as exc:  # what Pillow raises for data it cannot decode
        raise PageImageInvalid(f"the page image cannot be decoded: {exc}") from exc
    if not tables:
        return output
    try:
        from ocr_gateway.tables.image import tables_from_image

        found = tables_from_image(png, output.boxes)
    except Exception as exc:
        log.error("finding tables failed, the page keeps its text: %s: %s", type(exc).__name__, exc)
        return output
    return dataclasses.replace(output, tables=found)


def ocr_pool(engine: str, processes: int) -> ProcessPool:
    """The worker's OCR processes: each loads `engine` once and exits with its worker."""
    return ProcessPool(
        "ocr",
        processes,
        initializer=init_process,
        initargs=(engine, threads_per_process(processes), os.getpid()),
    )
