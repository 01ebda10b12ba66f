"""The gateway's processes as children of the launcher: `serve`, `dispatch` and `worker`.

Each child is configured by the launcher's environment and
- runs in a session of its own, so a terminal's Ctrl-C (a SIGINT to the foreground process
  group) reaches only the launcher, which then stops each child once and in order (an OCR
  worker's second signal would abandon its pages);
- gets SIGTERM from the kernel if the launcher dies, however it dies (`lifetime.py`), and stops
  as gracefully as after any SIGTERM.
"""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import sys
import time

from ocr_gateway.launcher.lifetime import end_with_parent

log = logging.getLogger(__name__)

Child = subprocess.Popen[bytes]


def spawn(command: list[str], what: str) -> Child:
    """`python -m ocr_gateway <command>` as a child that ends with this process."""
    child = subprocess.Popen(
        [sys.executable, "-m", "ocr_gateway", *command],
        start_new_session=True,
        # Runs in the child between fork and exec; the launcher spawns from its only thread.
        preexec_fn=functools.partial(end_with_parent, os.getpid()),
    )
    log.info("started %s pid=%d", what, child.pid)
    return child


def start_api(host: str, port: int) -> Child:
    return spawn(["serve", "--host", host, "--port", str(port)], "the API")


def start_dispatcher() -> Child:
    return spawn(["dispatch"], "the dispatcher")


def start_worker() -> Child:
    return spawn(["worker"], "an OCR worker")


def start_workers(count: int) -> list[Child]:
    return [start_worker() for _ in range(count)]


def stop_children(children: list[Child], what: str, grace: float) -> None:
    """SIGTERM each child once, give them `grace` seconds to finish what they hold, then kill."""
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
