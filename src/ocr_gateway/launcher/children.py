"""The processes `serve` runs beside the API: the dispatcher and the OCR workers.

They are configured by the same environment. `serve` starts another when one exits on its own
(a crash, an out-of-memory kill), so publishing and OCR do not stop until someone notices, and
stops them in order when it stops.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

WATCH_INTERVAL_S = 1.0
FIRST_RESTART_DELAY_S = 1.0
MAX_RESTART_DELAY_S = 30.0
# A child that ran this long before exiting is restarted after the first delay again.
STABLE_AFTER_S = 60.0
# The exit code of a child that cannot run as configured (e.g. its OCR engine is missing):
# starting it again would fail the same way.
EXIT_CONFIGURATION = 2

Child = subprocess.Popen[bytes]


def start_dispatcher() -> Child:
    """The dispatcher, in `serve`'s process group: a Ctrl-C reaches it too and it stops
    gracefully (its in-flight publishes settle), and a kill of the group takes it along."""
    child = subprocess.Popen(
        [sys.executable, "-m", "ocr_gateway", "dispatch", "--exit-with-parent"]
    )
    log.info("started the dispatcher pid=%d", child.pid)
    return child


def start_worker() -> Child:
    """An OCR worker in its own session, so a Ctrl-C in the terminal reaches only `serve`, which
    then stops it with one SIGTERM (a worker's second signal would abandon its pages)."""
    child = subprocess.Popen(
        [sys.executable, "-m", "ocr_gateway.worker", "--exit-with-parent"],
        start_new_session=True,
    )
    log.info("started an OCR worker pid=%d", child.pid)
    return child


def start_workers(count: int) -> list[Child]:
    return [start_worker() for _ in range(count)]


def stop_children(children: list[Child], what: str, *, grace: float) -> None:
    """SIGTERM each child, give them `grace` seconds to finish what they hold, then kill."""
    for child in children:
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + grace
    for child in children:
        try:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s pid=%d did not stop in %.0fs; killed", what, child.pid, grace)
            child.kill()
            child.wait()


@dataclass(slots=True)
class _Slot:
    what: str
    start: Callable[[], Child]
    child: Child
    started_at: float
    delay: float = FIRST_RESTART_DELAY_S
    restart_at: float | None = None
    given_up: bool = False


class Supervisor:
    """Keeps `serve`'s children running from a watcher thread (uvicorn holds the main one)."""

    def __init__(self) -> None:
        self._slots: list[_Slot] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="children", daemon=True)

    def add(self, what: str, start: Callable[[], Child], count: int = 1) -> None:
        for _ in range(count):
            self._slots.append(_Slot(what, start, start(), time.monotonic()))

    def start(self) -> None:
        self._thread.start()

    def children(self, what: str) -> list[Child]:
        with self._lock:
            return [slot.child for slot in self._slots if slot.what == what]

    def stop(self, what: str, *, grace: float) -> None:
        """Stop watching (once), then stop the children named `what`."""
        if not self._stopping.is_set():
            self._stopping.set()
            if self._thread.is_alive():
                self._thread.join()
        stop_children(self.children(what), what, grace=grace)

    def _watch(self) -> None:
        while not self._stopping.wait(WATCH_INTERVAL_S):
            with self._lock:
                for slot in self._slots:
                    self._check(slot, time.monotonic())

    def _check(self, slot: _Slot, now: float) -> None:
        code = slot.child.poll()
        if code is None or slot.given_up:
            return
        if slot.restart_at is None:
            if code == EXIT_CONFIGURATION:
                slot.given_up = True
                log.error(
                    "%s pid=%d cannot run as configured; not restarted", slot.what, slot.child.pid
                )
                return
            lived = now - slot.started_at
            slot.delay = (
                FIRST_RESTART_DELAY_S
                if lived > STABLE_AFTER_S
                else min(MAX_RESTART_DELAY_S, slot.delay * 2)
            )
            slot.restart_at = now + slot.delay
            log.warning(
                "%s pid=%d exited with code %s; starting another in %.0fs",
                slot.what,
                slot.child.pid,
                code,
                slot.delay,
            )
        elif now >= slot.restart_at:
            slot.child = slot.start()
            slot.started_at = now
            slot.restart_at = None
