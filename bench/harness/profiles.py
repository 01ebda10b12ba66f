"""How busy the machine was during a section, and py-spy profiles of an extra run."""

from __future__ import annotations

import asyncio
import collections
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import psutil

from bench.harness.common import log

if TYPE_CHECKING:
    from bench.harness.context import Context


class CpuWatch:
    """How busy the machine was during a section, and how much of it other programs used."""

    SERVICES = ("beam.smp", "postgres", "erl_child_setup", "epmd", "inet_gethost")

    def __init__(self) -> None:
        self.started = 0.0
        self.system: Any = None
        self.procs: dict[int, tuple[float, float]] = {}

    @staticmethod
    def _snapshot() -> dict[int, tuple[float, float, str, int]]:
        snapshot = {}
        for proc in psutil.process_iter(["pid", "create_time", "cpu_times", "name", "ppid"]):
            info = proc.info
            times = info.get("cpu_times")
            if times is None:
                continue
            snapshot[info["pid"]] = (
                float(info["create_time"] or 0),
                float(times.user + times.system),
                str(info.get("name") or ""),
                int(info.get("ppid") or 0),
            )
        return snapshot

    def begin(self) -> None:
        self.started = time.perf_counter()
        self.system = psutil.cpu_times()
        self.procs = {pid: (c, t) for pid, (c, t, _, _) in self._snapshot().items()}

    def end(self, own_roots: set[int]) -> str:
        wall = time.perf_counter() - self.started
        system = psutil.cpu_times()
        busy = (system.user + system.system + system.nice + getattr(system, "irq", 0)) - (
            self.system.user
            + self.system.system
            + self.system.nice
            + getattr(self.system, "irq", 0)
        )
        snapshot = self._snapshot()
        ours = set(own_roots)
        changed = True
        while changed:  # descendants of this bench and of its services
            changed = False
            for pid, (_, _, _, ppid) in snapshot.items():
                if ppid in ours and pid not in ours:
                    ours.add(pid)
                    changed = True
        other = 0.0
        accounted = 0.0
        for pid, (created, cpu, name, _) in snapshot.items():
            before = self.procs.get(pid)
            delta = cpu - before[1] if before and before[0] == created else cpu
            accounted += delta
            if pid not in ours and name not in self.SERVICES and delta > 0:
                other += delta
        cores = os.cpu_count() or 1
        short_lived = max(0.0, busy - accounted)
        return (
            f"{wall:.0f} s; CPU busy {100 * busy / (wall * cores):.0f}% of {cores} cores; other"
            f" programs {100 * other / (wall * cores):.0f}%; short-lived processes (this bench's"
            f" pdftoppm/rabbitmqctl included) {100 * short_lived / (wall * cores):.0f}%; load"
            f" {os.getloadavg()[0]:.2f}"
        )


FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def short_frame(frame: str) -> str:
    match = FRAME.match(frame)
    if not match:
        return frame[:90]
    path = match["file"]
    for marker in ("site-packages/", "src/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match['func']} ({path})"


def summarize_profile(raw: str, roles: dict[int, str], top: int = 14) -> str:
    """Collapsed py-spy stacks → share of samples by process, by leaf frame and inclusive."""
    total = 0
    by_process: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        owner = "process"
        while frames and frames[0].startswith("process "):
            head = frames.pop(0)
            pid_text = head.split(":", 1)[0].removeprefix("process ").strip()
            pid = int(pid_text) if pid_text.isdigit() else 0
            owner = roles.get(pid, f"child {pid}")
        if not frames:
            continue
        names = [short_frame(f) for f in frames]
        total += count
        by_process[owner] += count
        leaf[names[-1]] += count
        for name in set(names):
            inclusive[name] += count
    if not total:
        return "(no samples)"
    lines = [f"samples: {total}"]
    lines.append("by process:")
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in by_process.most_common()]
    lines.append("top frames by own time (leaf):")
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in leaf.most_common(top)]
    lines.append("top frames including callees:")
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top + 6)]
    return "\n".join(lines)


class Profiler:
    """py-spy on a running process (and its children) while an action runs."""

    def __init__(self, ctx: Context, mode: str) -> None:
        self.ctx = ctx
        self.mode = mode
        exe = ctx.bin / "py-spy"
        self.exe = str(exe) if exe.exists() else shutil.which("py-spy")
        self.reports: list[tuple[str, str]] = []

    def wanted(self, missed: bool) -> bool:
        if self.mode == "never" or not (missed or self.mode == "always"):
            return False
        if self.exe is None:
            self.reports.append(
                ("profile unavailable", "py-spy is not installed (pip install py-spy)")
            )
            return False
        return True

    async def record(
        self,
        label: str,
        pid: int,
        action: Callable[[], Awaitable[object]],
        *,
        subprocesses: bool,
        roles: dict[int, str],
    ) -> None:
        assert self.exe is not None
        output = self.ctx.out / f"profile-{re.sub(r'[^a-z0-9]+', '-', label.lower())}.txt"
        args = ["record", "--pid", str(pid), "--rate", "100", "--format", "raw"]
        args += ["--output", str(output), "--nonblocking"]
        if subprocesses:
            args.append("--subprocesses")
        log(f"profiling: {label}")
        spy = await asyncio.create_subprocess_exec(
            self.exe, *args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        await asyncio.sleep(1.5)  # attach before the action starts
        try:
            await action()
        finally:
            if spy.returncode is None:
                spy.send_signal(signal.SIGINT)
            try:
                _, err = await asyncio.wait_for(spy.communicate(), 60)
            except TimeoutError:
                spy.kill()
                err = b"py-spy did not stop"
        raw = await asyncio.to_thread(output.read_text) if output.exists() else ""
        summary = summarize_profile(raw, roles) if raw else f"(py-spy failed: {err[-300:]!r})"
        self.reports.append((label, summary))
