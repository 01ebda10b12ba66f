"""`serve`'s supervisor, with real child processes: a child that dies is started again after a
growing delay; one that exits as misconfigured is not."""

from __future__ import annotations

import subprocess
import sys
import time

from ocr_gateway.launcher.children import EXIT_CONFIGURATION, Supervisor


def _exiting_with(code: int, starts: list[float]) -> subprocess.Popen[bytes]:
    starts.append(time.monotonic())
    return subprocess.Popen([sys.executable, "-c", f"import sys; sys.exit({code})"])


def test_a_crashed_child_is_restarted_and_a_misconfigured_one_is_not() -> None:
    crashed: list[float] = []
    misconfigured: list[float] = []
    supervisor = Supervisor()
    supervisor.add("crashing", lambda: _exiting_with(1, crashed))
    supervisor.add("misconfigured", lambda: _exiting_with(EXIT_CONFIGURATION, misconfigured))
    supervisor.start()
    try:
        deadline = time.monotonic() + 20
        while len(crashed) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        supervisor.stop("crashing", grace=5)
        supervisor.stop("misconfigured", grace=5)
    assert len(crashed) == 3
    # The delay grows (2 s, then 4 s): no restart loop of one start a second.
    first_wait, second_wait = crashed[1] - crashed[0], crashed[2] - crashed[1]
    assert first_wait >= 2.0
    assert second_wait >= 4.0
    assert len(misconfigured) == 1
    assert all(child.poll() is not None for child in supervisor.children("crashing"))
