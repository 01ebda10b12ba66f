"""The launcher's restart arithmetic and stop order, on fake children and a fake clock, and the
parent-death signal its children ask for."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest

from ocr_gateway.launcher.lifetime import EXIT_ORPHANED, end_with_parent
from ocr_gateway.launcher.supervisor import (
    EXIT_CONFIGURATION,
    FIRST_RESTART_DELAY_S,
    IDLE_CHECK_S,
    MAX_RESTART_DELAY_S,
    STABLE_AFTER_S,
    Supervisor,
    restart_delay,
)


def test_the_delay_doubles_while_a_child_keeps_failing_up_to_the_cap() -> None:
    delays = []
    delay = FIRST_RESTART_DELAY_S
    for _ in range(7):
        delay = restart_delay(delay, lived=0.5)
        delays.append(delay)
    assert delays == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert MAX_RESTART_DELAY_S == 30.0


def test_a_stable_run_resets_the_delay() -> None:
    assert restart_delay(30.0, lived=STABLE_AFTER_S + 0.1) == FIRST_RESTART_DELAY_S
    assert restart_delay(30.0, lived=STABLE_AFTER_S) == MAX_RESTART_DELAY_S
    assert restart_delay(4.0, lived=STABLE_AFTER_S - 1) == 8.0


@dataclass
class FakeChild:
    pid: int
    code: int | None = None

    def poll(self) -> int | None:
        return self.code


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _supervised(clock: Clock) -> tuple[Supervisor[FakeChild], list[FakeChild], list[str]]:
    started: list[FakeChild] = []
    stopped: list[str] = []

    def start() -> FakeChild:
        started.append(FakeChild(pid=len(started) + 1))
        return started[-1]

    def stop(children: list[FakeChild], what: str, grace: float) -> None:
        stopped.append(f"{what}:{[c.pid for c in children]}:{grace}")

    supervisor: Supervisor[FakeChild] = Supervisor(clock)
    supervisor.add("child", start, grace=5.0, stop=stop)
    return supervisor, started, stopped


def test_an_exit_schedules_a_start_after_the_delay() -> None:
    clock = Clock()
    supervisor, started, _ = _supervised(clock)
    supervisor.start()
    assert len(started) == 1
    assert supervisor.check() == IDLE_CHECK_S

    clock.now += 1
    started[0].code = 1
    assert supervisor.check() == 2.0  # noticed; the next start is due in 2 s
    clock.now += 1.5
    assert supervisor.check() == pytest.approx(0.5)
    assert len(started) == 1
    clock.now += 0.5
    supervisor.check()
    assert len(started) == 2

    clock.now += 1
    started[1].code = -9  # SIGKILL, e.g. the OOM killer
    assert supervisor.check() == 4.0
    clock.now += 4
    supervisor.check()
    assert len(started) == 3

    clock.now += STABLE_AFTER_S + 1
    started[2].code = 1
    assert supervisor.check() == FIRST_RESTART_DELAY_S


def test_a_misconfigured_child_is_not_started_again() -> None:
    clock = Clock()
    supervisor, started, _ = _supervised(clock)
    supervisor.start()
    started[0].code = EXIT_CONFIGURATION
    assert supervisor.check() == IDLE_CHECK_S
    clock.now += 3600
    supervisor.check()
    assert len(started) == 1
    assert supervisor.all_given_up()


def test_groups_stop_in_the_order_added_and_only_running_children() -> None:
    clock = Clock()
    stopped: list[str] = []
    children: dict[str, list[FakeChild]] = {}

    def starter(what: str) -> FakeChild:
        child = FakeChild(pid=100 + sum(map(len, children.values())))
        children.setdefault(what, []).append(child)
        return child

    def stop(group: list[FakeChild], what: str, grace: float) -> None:
        stopped.append(f"{what} {[c.pid for c in group]} {grace}")

    supervisor: Supervisor[FakeChild] = Supervisor(clock)
    supervisor.add("API", functools.partial(starter, "API"), grace=30, stop=stop)
    supervisor.add("dispatcher", functools.partial(starter, "dispatcher"), grace=25, stop=stop)
    supervisor.add("worker", functools.partial(starter, "worker"), count=2, grace=40, stop=stop)
    supervisor.start()
    children["worker"][0].code = 1  # exited, waiting for its restart: nothing to stop
    supervisor.check()
    supervisor.stop()
    assert stopped == ["API [100] 30", "dispatcher [101] 25", "worker [103] 40"]


def _child_reporting_its_parent_death_signal(parent: int) -> subprocess.CompletedProcess[str]:
    code = (
        "from ocr_gateway.launcher.lifetime import parent_death_signal; "
        "print(parent_death_signal())"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        preexec_fn=functools.partial(end_with_parent, parent),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux only")
def test_a_child_asks_for_sigterm_when_its_parent_dies() -> None:
    result = _child_reporting_its_parent_death_signal(os.getpid())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "15"


def test_a_child_whose_parent_is_already_gone_exits_at_once() -> None:
    result = _child_reporting_its_parent_death_signal(parent=1)  # not its parent
    assert result.returncode == EXIT_ORPHANED
    assert result.stdout == ""
