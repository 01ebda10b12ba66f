"""Keeping the launcher's children alive, and stopping them in order.

One thread does everything: it waits on a pipe that the signal handlers write to (SIGCHLD when a
child exits, SIGTERM/SIGINT/SIGHUP to stop), checks its children, and starts again one that
exited on its own after a growing delay. The single thread is what makes `preexec_fn` safe and
the kernel's parent-death signal reliable (see `lifetime.py`).
"""

from __future__ import annotations

import logging
import os
import select
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Generic, Protocol, TypeVar

log = logging.getLogger(__name__)

FIRST_RESTART_DELAY_S = 1.0
MAX_RESTART_DELAY_S = 30.0
# A child that ran this long before exiting is started again after the first delay.
STABLE_AFTER_S = 60.0
# The exit code of a child that cannot run as configured (e.g. its OCR engine is missing):
# starting it again would fail the same way.
EXIT_CONFIGURATION = 2
# Child exits and stop signals wake the loop at once; this is only a safety net.
IDLE_CHECK_S = 1.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Process(Protocol):
    """What the supervisor needs of a child (`subprocess.Popen` has it)."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...


P = TypeVar("P", bound=Process)


def restart_delay(previous: float, lived: float) -> float:
    """The wait before starting again a child that exited after `lived` seconds, given the wait
    before its previous start: the first delay again after a stable run, else twice the previous
    wait (2, 4, 8, 16 s while it keeps failing), never more than the cap."""
    if lived > STABLE_AFTER_S:
        return FIRST_RESTART_DELAY_S
    return min(MAX_RESTART_DELAY_S, previous * 2)


@dataclass(slots=True)
class Slot(Generic[P]):
    """One child the supervisor keeps running, and when to start it again."""

    what: str
    start: Callable[[], P]
    child: P | None = None
    started_at: float = 0.0
    delay: float = FIRST_RESTART_DELAY_S
    restart_at: float | None = None
    given_up: bool = False

    def launch(self, now: float) -> None:
        self.child = self.start()
        self.started_at = now
        self.restart_at = None

    def check(self, now: float) -> float | None:
        """Notice an exit, or start again when due; returns when this slot next needs a look."""
        if self.given_up or self.child is None:
            return None
        if self.restart_at is not None:
            if now < self.restart_at:
                return self.restart_at
            self.launch(now)
            return None
        code = self.child.poll()
        if code is None:
            return None
        if code == EXIT_CONFIGURATION:
            self.given_up = True
            log.error(
                "%s pid=%d cannot run as configured; not restarted", self.what, self.child.pid
            )
            return None
        self.delay = restart_delay(self.delay, now - self.started_at)
        self.restart_at = now + self.delay
        log.warning(
            "%s pid=%d exited with code %s; starting another in %.0fs",
            self.what,
            self.child.pid,
            code,
            self.delay,
        )
        return self.restart_at


@dataclass(slots=True)
class Group(Generic[P]):
    """Children of one kind, and how to stop them: SIGTERM, then a kill after `grace` s."""

    what: str
    grace: float
    stop: Callable[[list[P], str, float], None]
    slots: list[Slot[P]] = field(default_factory=list)

    def running(self) -> list[P]:
        return [s.child for s in self.slots if s.child is not None and s.child.poll() is None]


class Supervisor(Generic[P]):
    """Starts every group's children, keeps them running, stops them in the order added."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.groups: list[Group[P]] = []
        self._clock = clock
        self._stop_signal: int | None = None

    def add(
        self,
        what: str,
        start: Callable[[], P],
        *,
        count: int = 1,
        grace: float,
        stop: Callable[[list[P], str, float], None],
    ) -> None:
        group = Group(what, grace, stop)
        group.slots = [Slot(what, start) for _ in range(count)]
        self.groups.append(group)

    def start(self) -> None:
        now = self._clock()
        for group in self.groups:
            for slot in group.slots:
                slot.launch(now)

    def check(self) -> float:
        """Look at every child; returns the seconds until a restart is due (or a safety-net
        interval)."""
        now = self._clock()
        due = [
            at
            for group in self.groups
            for slot in group.slots
            if (at := slot.check(now)) is not None
        ]
        return max(0.0, min(due) - now) if due else IDLE_CHECK_S

    def all_given_up(self) -> bool:
        return all(slot.given_up for group in self.groups for slot in group.slots)

    def stop(self) -> None:
        """Stop each group in turn: the next one only once the previous one has stopped."""
        for group in self.groups:
            children = group.running()
            if children:
                pids = ",".join(str(child.pid) for child in children)
                log.info("stopping %s pid=%s", group.what, pids)
                group.stop(children, group.what, group.grace)
                log.info("stopped %s pid=%s", group.what, pids)

    def run(self) -> int:
        """Start the children and keep them running until SIGTERM, SIGINT or SIGHUP; then stop
        them in order and return 0 (or 2 once every child has exited as misconfigured)."""
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_stop_signal)
        signal.signal(signal.SIGCHLD, _wake_only)
        try:
            self.start()
            while self._stop_signal is None:
                timeout = self.check()
                if self.all_given_up():
                    log.error("no child can run as configured; stopping")
                    return EXIT_CONFIGURATION
                # A signal that lands after the check still ends this wait: its handler has
                # written to the pipe.
                select.select([wake_read], [], [], timeout)
                _drain(wake_read)
            log.info("%s: stopping every process", signal.Signals(self._stop_signal).name)
            self.stop()
            log.info("stopped")
            return 0
        finally:
            signal.set_wakeup_fd(-1)
            os.close(wake_read)
            os.close(wake_write)

    def _on_stop_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self._stop_signal is None:
            self._stop_signal = signum
        else:
            log.info(
                "%s: already stopping (waiting for in-flight work)", signal.Signals(signum).name
            )


def _wake_only(_signum: int, _frame: FrameType | None) -> None:
    """SIGCHLD's handler: its byte on the wakeup pipe is all that is needed."""


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass
