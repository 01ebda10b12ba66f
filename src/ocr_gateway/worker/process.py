"""OCR off the event loop: a `spawn` process pool whose processes each build the engine once.

OCR is CPU-bound and takes seconds per page, so it runs in `ocr_processes` processes. They are
spawned, not forked, so no event loop or AMQP connection is ever copied into them; each loads
the models once in its initializer. A process that dies (a crash, the OOM killer) breaks the
pool, which is then rebuilt; one that runs over the page timeout is killed the same way.
Each OCR process also exits when the worker that started it is gone, so a killed worker
leaves no orphan burning a core.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from ocr_gateway.worker.engine import OcrEngine, build_engine
from ocr_gateway.worker.layout import OcrOutput

log = logging.getLogger(__name__)

PARENT_POLL_S = 1.0
START_TIMEOUT_S = 300.0

_engine: OcrEngine | None = None


class OcrProcessLost(Exception):
    """The OCR process died or was killed for running over its time; the page may be fine."""


class PageImageInvalid(Exception):
    """The message's image is not base64 or not an image: a failed page, not a crash."""


def threads_per_process(processes: int) -> int:
    """Share the cores this worker may run on between its OCR processes."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // processes)


# ---------------------------------------------------------------- inside the OCR processes


def init_process(engine_name: str, threads: int, parent_pid: int) -> None:
    """Pool initializer: ignore Ctrl-C (the worker decides), watch the parent, load models."""
    global _engine
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    _engine = build_engine(engine_name, threads)


def _exit_with_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_S)
    os._exit(1)


def engine_name() -> str:
    """Run once per process at start-up: proves the initializer ran and the models loaded."""
    if _engine is None:
        raise RuntimeError("the OCR engine was not initialised")
    return _engine.name


def recognize_page(image_base64: str) -> OcrOutput:
    """Decode the page message's image and OCR it."""
    if _engine is None:
        raise RuntimeError("the OCR engine was not initialised")
    try:
        png = base64.b64decode(image_base64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PageImageInvalid(f"image_base64 is not valid base64: {exc}") from exc
    try:
        return _engine.recognize(png)
    except (OSError, SyntaxError) as exc:  # what Pillow raises for data it cannot decode
        raise PageImageInvalid(f"the page image cannot be decoded: {exc}") from exc


# ---------------------------------------------------------------- in the worker


class OcrPool:
    """`run_in_executor` over the OCR processes, rebuilt when a process is lost."""

    def __init__(self, engine: str, processes: int) -> None:
        self.engine = engine
        self.processes = processes
        self._context = multiprocessing.get_context("spawn")
        self._executor = self._new_executor()
        self.rebuilds = 0

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.processes,
            mp_context=self._context,
            initializer=init_process,
            initargs=(self.engine, threads_per_process(self.processes), os.getpid()),
        )

    async def start(self) -> None:
        """Start every process and load its models now, so the first page does not wait."""
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(
            asyncio.gather(
                *(loop.run_in_executor(self._executor, engine_name) for _ in range(self.processes))
            ),
            START_TIMEOUT_S,
        )

    async def recognize(self, image_base64: str, *, timeout: float) -> OcrOutput:
        """OCR one page; OcrProcessLost if its process died or ran over `timeout`."""
        executor = self._executor
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(executor, recognize_page, image_base64)
        except (BrokenProcessPool, RuntimeError) as exc:
            self._replace(executor, reason=str(exc) or type(exc).__name__)
            raise OcrProcessLost("the OCR process was unavailable") from exc
        try:
            return await asyncio.wait_for(future, timeout)
        except BrokenProcessPool as exc:
            self._replace(executor, reason="an OCR process died")
            raise OcrProcessLost("the OCR process died") from exc
        except TimeoutError as exc:
            self._replace(executor, reason=f"a page ran over {timeout:.0f}s", kill=True)
            raise OcrProcessLost(f"OCR ran over {timeout:.0f}s") from exc

    def _replace(self, broken: ProcessPoolExecutor, *, reason: str, kill: bool = False) -> None:
        """Swap in a fresh executor once per broken one; its other pages get OcrProcessLost."""
        if broken is not self._executor:
            return
        log.warning("OCR pool rebuilt: %s", reason)
        self.rebuilds += 1
        self._executor = self._new_executor()
        if kill:
            self._kill(broken)
        broken.shutdown(wait=False, cancel_futures=True)

    @staticmethod
    def _kill(executor: ProcessPoolExecutor) -> None:
        processes = getattr(executor, "_processes", None) or {}
        for process in list(processes.values()):
            process.kill()

    def shutdown(self) -> None:
        """Stop at once: a page still in OCR is abandoned (its message is not acked)."""
        self._kill(self._executor)
        self._executor.shutdown(wait=False, cancel_futures=True)
