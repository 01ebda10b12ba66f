"""A process pool that survives its workers: rebuilt after a crash, killed after a timeout.

Shared by the render and inspection pools of the API and the OCR pool of the worker.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
import multiprocessing.connection
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
    """The task did not finish: its worker process died (crash or kill) or ran over its time."""


class TaskTimedOut(WorkerLost):
    """The task ran over its time limit, and its worker was killed."""


class PoolUnavailable(WorkerLost):
    """The pool could not take the task at all, even after a rebuild: the task never ran."""


def _fault(executor: ProcessPoolExecutor) -> str | None:
    """Why `executor` can no longer be trusted with a task, or None if it still can.

    A worker that died while idle breaks the executor only once its manager thread notices;
    its sentinel (a pipe closed by the kernel when the process ends) shows it at once.
    """
    broken = getattr(executor, "_broken", False)
    if broken:
        return str(broken)
    processes = getattr(executor, "_processes", None) or {}
    try:
        sentinels = [process.sentinel for process in list(processes.values())]
    except ValueError:  # a process object already closed
        return "a worker process was closed"
    if sentinels and multiprocessing.connection.wait(sentinels, timeout=0):
        return "a worker process had exited"
    return None


class ProcessPool:
    """`run_in_executor` over a `spawn` pool, so no event loop or DB connection is ever forked.

    A pool found broken before a task (a worker that died while idle, or a break noticed at
    submit) is rebuilt and the task submitted to the new one, so an earlier crash never fails a
    later task. A task whose worker dies under it raises WorkerLost; the caller decides whether
    to try again, because only it knows whether the task itself may be what kills the worker.
    """

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
        self._closed = False
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
        for interpreter start-up or for what the initializer loads. Raise WorkerLost if the
        pool cannot run the probe."""
        await asyncio.gather(*(self.run(probe, timeout=timeout) for _ in range(self.workers)))

    async def run(self, fn: Callable[..., T], *args: Any, timeout: float) -> T:
        """Run `fn(*args)` in a worker.

        Raise PoolUnavailable if no working pool would take the task, TaskTimedOut if it ran
        over `timeout` (its worker is killed), and WorkerLost if its worker died under it.
        """
        executor, future = self._submit(functools.partial(fn, *args))
        try:
            return await asyncio.wait_for(future, timeout)
        except BrokenProcessPool as exc:
            self._replace(executor, reason="a worker process died")
            raise WorkerLost(f"the {self.name} worker process died") from exc
        except TimeoutError as exc:
            self._replace(executor, reason=f"a task ran over {timeout:.0f}s", kill=True)
            raise TaskTimedOut(f"the {self.name} worker ran over {timeout:.0f}s") from exc

    def _submit(self, task: Callable[[], T]) -> tuple[ProcessPoolExecutor, asyncio.Future[T]]:
        """Hand `task` to a pool checked just before; rebuild and try once more if it refuses."""
        loop = asyncio.get_running_loop()
        error: Exception | None = None
        for _ in range(2):
            if self._closed:
                raise PoolUnavailable(f"the {self.name} pool is shut down")
            executor = self._executor
            fault = _fault(executor)
            if fault is not None:
                self._replace(executor, reason=f"found before use: {fault}")
                executor = self._executor
            try:
                return executor, loop.run_in_executor(executor, task)
            except (BrokenProcessPool, RuntimeError, OSError) as exc:
                # Broken since the check, or no worker process could be started.
                error = exc
                self._replace(executor, reason=str(exc) or type(exc).__name__)
        raise PoolUnavailable(f"the {self.name} worker was unavailable ({error})") from error

    def worker_pids(self) -> list[int]:
        processes = getattr(self._executor, "_processes", None) or {}
        return [p.pid for p in list(processes.values()) if p.pid is not None]

    def _replace(self, broken: ProcessPoolExecutor, *, reason: str, kill: bool = False) -> None:
        """Swap in a fresh executor once per broken one; tasks on the old one get WorkerLost."""
        if broken is not self._executor or self._closed:
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
        """Stop the workers for good: later tasks get PoolUnavailable, and no rebuild happens."""
        self._closed = True
        processes = getattr(self._executor, "_processes", None) or {}
        self._executor.shutdown(wait=False, cancel_futures=True)
        for process in list(processes.values()):
            process.kill()


class IsolatedPool:
    """Each task in a process of its own: `processes` one-process pools, leased a task at a time.

    For work on untrusted input (inspecting uploads): a task that crashes its process or runs
    over its time takes down only that process, which is rebuilt, and no other task sees it,
    as they would in one shared executor, where a killed worker fails every task in flight.
    Tasks beyond `processes` wait for a free one, first come first served.
    """

    def __init__(
        self,
        name: str,
        processes: int,
        *,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
    ) -> None:
        self.name = name
        self.workers = processes
        self._pools = [
            ProcessPool(f"{name}-{index}", 1, initializer=initializer, initargs=initargs)
            for index in range(1, processes + 1)
        ]
        self._idle: asyncio.Queue[ProcessPool] = asyncio.Queue()
        for pool in self._pools:
            self._idle.put_nowait(pool)

    @property
    def rebuilds(self) -> int:
        return sum(pool.rebuilds for pool in self._pools)

    def worker_pids(self) -> list[int]:
        return [pid for pool in self._pools for pid in pool.worker_pids()]

    async def start(self, probe: Callable[[], object] = warm_up, timeout: float = 120) -> None:
        """Start every process now; raise WorkerLost if one cannot run the probe."""
        await asyncio.gather(*(pool.start(probe, timeout) for pool in self._pools))

    async def run(self, fn: Callable[..., T], *args: Any, timeout: float) -> T:
        """Run `fn(*args)` in a process of its own, waiting for a free one; raises as
        `ProcessPool.run` does. `timeout` counts from when the task starts running."""
        pool = await self._idle.get()
        try:
            return await pool.run(fn, *args, timeout=timeout)
        finally:
            self._idle.put_nowait(pool)

    def shutdown(self) -> None:
        for pool in self._pools:
            pool.shutdown()
