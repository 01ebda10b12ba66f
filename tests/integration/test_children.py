"""`ocr-gateway run` (the launcher behind `make run`) and its children, as real processes over the
real PostgreSQL and RabbitMQ: a SIGTERM settles what is in flight and stops every process in
order, a terminal's Ctrl-C prints no traceback and leaves nothing behind, a child that dies is
started again after a growing delay (one that exits as misconfigured is not), and a SIGKILLed
launcher or worker leaves no orphan."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest
from aio_pika.abc import AbstractChannel

from ocr_gateway.launcher.children import stop_children
from ocr_gateway.launcher.supervisor import EXIT_CONFIGURATION, Supervisor
from tests.support.documents import sample
from tests.support.gateway import drain
from tests.support.launched import (
    Gateway,
    count_status,
    logged_dispatcher_pids,
    served_with_pages,
    service_env,
)
from tests.support.waiting import wait_until

# `run` starts workers with the default engine, RapidOCR.
needs_ocr = pytest.mark.skipif(
    importlib.util.find_spec("rapidocr_onnxruntime") is None,
    reason="rapidocr_onnxruntime is not importable: install the OCR extra "
    "(pip install -e '.[ocr]'; `make test` does)",
)


def line_index(output: str, text: str) -> int:
    """The position of the first line containing `text` (it must be there)."""
    lines = output.splitlines()
    found = [n for n, line in enumerate(lines) if text in line]
    assert found, f"no line contains {text!r}:\n" + "\n".join(lines[-40:])
    return found[0]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


async def test_run_publishes_from_its_own_dispatcher_process_which_stops_cleanly(
    tmp_path: Path, channel: AbstractChannel, spawned: list[Gateway]
) -> None:
    """`run` runs the dispatcher as a process of its own; a SIGTERM to `run` stops it
    gracefully mid-publish: every page ends queued (its message in the queue) or pending."""
    async with served_with_pages(
        tmp_path, spawned, jobs=3, pages=100, OCR_GATEWAY_QUEUE_HIGH_WATER="50"
    ) as (settings, sessions, jobs, gateway):
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
            assert (await http.post("/admin/start")).status_code == 202

            async def paused_at_the_mark() -> bool:
                return await count_status(sessions, "queued") >= 40

            await wait_until(paused_at_the_mark)
            assert (await http.get("/health")).json()["publishing"] is True

        started = logged_dispatcher_pids(settings)
        assert len(started) == 1
        dispatcher_pid = started[0]
        assert dispatcher_pid != gateway.pid
        os.kill(dispatcher_pid, 0)  # alive while `run` runs

        assert gateway.process is not None
        os.kill(gateway.pid, signal.SIGTERM)
        assert await asyncio.wait_for(gateway.process.wait(), 60) == 0
        with pytest.raises(ProcessLookupError):
            os.kill(dispatcher_pid, 0)
        assert "dispatcher stopped" in "".join(
            p.read_text() for p in settings.logs_dir.glob("*.log")
        )
        await gateway.wait_gone()

        queued = await count_status(sessions, "queued")
        pending = await count_status(sessions, "pending")
        assert await count_status(sessions, "publishing") == 0
        assert queued + pending == 300
        bodies = await drain(channel, settings.pages_queue)
        received = {(m["job_id"], m["page_number"]) for m in map(orjson.loads, bodies)}
        assert len(received) == len(bodies) == queued
        assert received <= {(str(j), n) for j in jobs for n in range(1, 101)}


@needs_ocr
async def test_ctrl_c_stops_run_and_every_child_cleanly_and_in_order(
    tmp_path: Path, spawned: list[Gateway]
) -> None:
    """A terminal's Ctrl-C sends SIGINT to its foreground process group: the launcher, whose
    children run in sessions of their own. It stops the API, then the dispatcher, then the
    worker, each with one SIGTERM; nothing prints a traceback and no process is left."""
    async with service_env(tmp_path, OCR_GATEWAY_RUN_WORKERS="1") as (settings, env):
        output = tmp_path / "gateway.log"
        gateway = Gateway(env, output)
        spawned.append(gateway)
        await gateway.start()
        assert gateway.process is not None

        async def dispatcher_and_worker_running() -> bool:
            logged = output.read_text()
            return bool(logged_dispatcher_pids(settings)) and "worker consuming" in logged

        await wait_until(dispatcher_and_worker_running, timeout=90)
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
            data = sample("GeoTopo-komprimiert.pdf").read_bytes()
            accepted = await http.post("/ocrpdf", files={"file": ("geo.pdf", data)})
            assert accepted.status_code == 202  # its pages render while the signal arrives
        assert len(gateway.pids()) > 4  # launcher, API, dispatcher, worker, pools

        os.killpg(gateway.pid, signal.SIGINT)
        assert await asyncio.wait_for(gateway.process.wait(), 60) == 0
        text_out = output.read_text()
        assert "dispatcher stopped" in text_out
        assert "worker stopped" in text_out
        assert "Traceback" not in text_out, text_out[-3000:]
        assert "leaked semaphore" not in text_out, text_out[-3000:]
        assert "abandoning" not in text_out, "the worker got one signal, not two"
        api_stopping = line_index(text_out, "ocr-gateway shutting down")
        dispatcher_stopping = line_index(text_out, "dispatcher stopping")
        worker_stopping = line_index(text_out, "worker stopping")
        assert api_stopping < dispatcher_stopping < worker_stopping
        # Pool processes and the resource trackers too.
        await gateway.wait_gone()


async def test_a_killed_dispatcher_is_replaced_and_publishing_goes_on(
    tmp_path: Path, channel: AbstractChannel, spawned: list[Gateway]
) -> None:
    """`run` starts another dispatcher when its dispatcher dies (SIGKILL, e.g. out of
    memory); the new one publishes a later start."""
    async with served_with_pages(tmp_path, spawned, jobs=2, pages=50) as (
        settings,
        sessions,
        jobs,
        gateway,
    ):

        async def started(count: int) -> bool:
            return len(logged_dispatcher_pids(settings)) >= count

        await wait_until(lambda: started(1))
        first = logged_dispatcher_pids(settings)[0]
        os.kill(first, signal.SIGKILL)
        await wait_until(lambda: started(2), timeout=30)
        second = logged_dispatcher_pids(settings)[1]
        assert second != first
        os.kill(second, 0)

        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
            assert (await http.post("/admin/start")).status_code == 202

            async def all_queued() -> bool:
                return await count_status(sessions, "queued") == 100

            await wait_until(all_queued, timeout=60)
        await gateway.kill()
        bodies = await drain(channel, settings.pages_queue)
        received = {(m["job_id"], m["page_number"]) for m in map(orjson.loads, bodies)}
        assert received == {(str(j), n) for j in jobs for n in range(1, 51)}


@needs_ocr
async def test_a_killed_launcher_takes_every_child_down(
    tmp_path: Path, spawned: list[Gateway]
) -> None:
    """SIGKILL gives the launcher no chance to stop anything: the kernel sends each child the
    SIGTERM it asked for at start (its parent-death signal), and each stops as gracefully as
    after any SIGTERM. No dispatcher, worker or pool process is left behind."""
    async with service_env(tmp_path, OCR_GATEWAY_RUN_WORKERS="1") as (settings, env):
        output = tmp_path / "gateway.log"
        gateway = Gateway(env, output)
        spawned.append(gateway)
        await gateway.start()
        assert gateway.process is not None

        async def dispatcher_and_worker_running() -> bool:
            logged = output.read_text()
            return bool(logged_dispatcher_pids(settings)) and "worker consuming" in logged

        await wait_until(dispatcher_and_worker_running, timeout=90)
        before = gateway.pids()
        dispatcher = logged_dispatcher_pids(settings)[0]
        assert dispatcher in before
        assert len(before) > 4  # launcher, API, dispatcher, worker, pools

        os.kill(gateway.pid, signal.SIGKILL)
        assert await asyncio.wait_for(gateway.process.wait(), 10) == -signal.SIGKILL
        await gateway.wait_gone(timeout=60)
        assert not any(alive(pid) for pid in before)
        text_out = output.read_text()
        assert "dispatcher stopped" in text_out  # gracefully: in-flight publishes settled
        assert "worker stopped" in text_out
        assert "Traceback" not in text_out, text_out[-3000:]


@needs_ocr
async def test_a_killed_worker_leaves_no_ocr_process_and_is_replaced(
    tmp_path: Path, spawned: list[Gateway]
) -> None:
    """An OCR worker SIGKILLed (e.g. out of memory) takes its OCR processes along (the kernel
    kills them as their parent dies), and the launcher starts another worker."""
    async with service_env(tmp_path, OCR_GATEWAY_RUN_WORKERS="1") as (_settings, env):
        output = tmp_path / "gateway.log"
        gateway = Gateway(env, output)
        spawned.append(gateway)
        await gateway.start()

        async def consuming(count: int) -> bool:
            return output.read_text().count("worker consuming") >= count

        await wait_until(lambda: consuming(1), timeout=90)
        worker = int(output.read_text().split("started an OCR worker pid=", 1)[1].split()[0])
        ocr_processes = [pid for pid in gateway.pids() if _parent(pid) == worker]
        assert ocr_processes, "the worker's OCR pool runs"

        os.kill(worker, signal.SIGKILL)

        async def ocr_processes_gone() -> bool:
            return not any(alive(pid) for pid in ocr_processes)

        await wait_until(ocr_processes_gone, timeout=10)
        await wait_until(lambda: consuming(2), timeout=90)
        assert output.read_text().count("started an OCR worker pid=") == 2


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError):
        return 0


def _exiting_with(code: int, starts: list[float]) -> subprocess.Popen[bytes]:
    starts.append(time.monotonic())
    return subprocess.Popen([sys.executable, "-c", f"import sys; sys.exit({code})"])


def test_a_crashed_child_is_restarted_and_a_misconfigured_one_is_not() -> None:
    """The launcher's supervisor with real child processes and the real clock."""
    crashed: list[float] = []
    misconfigured: list[float] = []
    supervisor: Supervisor[subprocess.Popen[bytes]] = Supervisor()
    supervisor.add("crashing", lambda: _exiting_with(1, crashed), grace=5, stop=stop_children)
    supervisor.add(
        "misconfigured",
        lambda: _exiting_with(EXIT_CONFIGURATION, misconfigured),
        grace=5,
        stop=stop_children,
    )
    supervisor.start()
    try:
        deadline = time.monotonic() + 20
        while len(crashed) < 3 and time.monotonic() < deadline:
            time.sleep(min(0.2, supervisor.check()))
    finally:
        supervisor.stop()
    assert len(crashed) == 3
    # The delay grows (2 s, then 4 s): no restart loop of one start a second.
    first_wait, second_wait = crashed[1] - crashed[0], crashed[2] - crashed[1]
    assert first_wait >= 2.0
    assert second_wait >= 4.0
    assert len(misconfigured) == 1
    assert supervisor.all_given_up() is False
    children = [slot.child for group in supervisor.groups for slot in group.slots]
    assert all(child is not None and child.poll() is not None for child in children)
