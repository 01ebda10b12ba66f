"""A process pool that survives its workers: rebuilt after a crash, killed after a timeout.

Shared by the render and inspection pools of the API and the OCR pool of the worker.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
import os
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


def lower_priority(niceness: int) -> None:
    """An initializer for background work that should yield the CPU to the API and uploads."""
    if niceness:
        os.nice(niceness)


def _start_worker(initializer: Callable[..., object] | None, initargs: tuple[Any, ...]) -> None:
    """Every pool process ignores Ctrl-C: a terminal's SIGINT reaches the whole process group,
    and the owning process decides when its pool stops (and without a traceback per worker)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if initializer is not None:
        initializer(*initargs)


def warm_up() -> int:
    """Run once per new worker so the first real task does not pay for start-up."""
    return os.getpid()


class WorkerLost(Exception):
    """The worker process died (crash or kill) or was stopped for exceeding its time."""


class ProcessPool:
    """`run_in_executor` over a `spawn` pool, so no event loop or DB connection is ever forked."""

    def __init__(
        self,
        name: str,
        workers: int,
        *,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
    ) -> None:
        self.name = name
        self.workers = workers
        self._initializer = initializer
        self._initargs = initargs
        self._context = multiprocessing.get_context("spawn")
        self._executor = self._new_executor()
        self.rebuilds = 0

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=self._context,
            initializer=_start_worker,
            initargs=(self._initializer, self._initargs),
        )

    async def start(self, probe: Callable[[], object] = warm_up, timeout: float = 120) -> None:
        """Start every worker now (running `probe` in each), so the first task does not wait
        for interpreter start-up or for what the initializer loads."""
        await asyncio.gather(*(self.run(probe, timeout=timeout) for _ in range(self.workers)))

    async def run(self, fn: Callable[..., T], *args: Any, timeout: float) -> T:
        """Run `fn(*args)` in a worker; raise WorkerLost if the worker dies or runs over."""
        executor = self._executor
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(executor, functools.partial(fn, *args))
        except (BrokenProcessPool, RuntimeError) as exc:
            self._replace(executor, reason=str(exc) or type(exc).__name__)
            raise WorkerLost(f"the {self.name} worker was unavailable") from exc
        try:
            return await asyncio.wait_for(future, timeout)
        except BrokenProcessPool as exc:
            self._replace(executor, reason="a worker process died")
            raise WorkerLost(f"the {self.name} worker process died") from exc
        except TimeoutError as exc:
            self._replace(executor, reason=f"a task ran over {timeout:.0f}s", kill=True)
            raise WorkerLost(f"the {self.name} worker ran over {timeout:.0f}s") from exc

    def worker_pids(self) -> list[int]:
        processes = getattr(self._executor, "_processes", None) or {}
        return [p.pid for p in processes.values() if p.pid is not None]

    def _replace(self, broken: ProcessPoolExecutor, *, reason: str, kill: bool = False) -> None:
        """Swap in a fresh executor once per broken one; tasks on the old one get WorkerLost."""
        if broken is not self._executor:
            return
        log.warning("%s pool rebuilt: %s", self.name, reason)
        self.rebuilds += 1
        self._executor = self._new_executor()
        if kill:
            processes = getattr(broken, "_processes", None) or {}
            for process in list(processes.values()):
                process.kill()
        broken.shutdown(wait=False, cancel_futures=True)

    def shutdown(self) -> None:
        processes = getattr(self._executor, "_processes", None) or {}
        self._executor.shutdown(wait=False, cancel_futures=True)
        for process in list(processes.values()):
            process.kill()
