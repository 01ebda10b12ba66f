"""The API process killed mid-render and mid-publish (SIGKILL), then started again:
renders resume from temp/, leased pages return to pending, orphaned uploads are removed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest
from aio_pika.abc import AbstractChannel
from sqlalchemy import text

from ocr_gateway.core.settings import Settings
from ocr_gateway.db.engine import SessionFactory, build_engine, build_session_factory
from ocr_gateway.db.migrate import drop_database, ensure_database, upgrade
from ocr_gateway.rendering.storage import Storage
from tests.support.documents import sample
from tests.support.gateway import RUN_ID, delete_queues, drain, make_settings, seed_pages
from tests.support.proxy import FaultProxy
from tests.support.waiting import wait_until


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServiceProcess:
    """`python -m ocr_gateway serve` in its own process group, so SIGKILL takes its pool too."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.port = int(env["OCR_GATEWAY_PORT"])
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "ocr_gateway",
                "serve",
                env=self.env,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )

        async def up() -> bool:
            try:
                async with httpx.AsyncClient() as http:
                    response = await http.get(f"{self.url}/health", timeout=1)
                return response.status_code == 200
            except httpx.HTTPError:
                return False

        await wait_until(up, timeout=60, interval=0.2)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            await asyncio.wait_for(self.process.wait(), 10)


async def count_status(sessions: SessionFactory, status: str) -> int:
    async with sessions() as session:
        value = await session.scalar(
            text("SELECT count(*) FROM pages WHERE status = :s"), {"s": status}
        )
    return int(value or 0)


@pytest.fixture
async def spawned() -> AsyncIterator[list[ServiceProcess]]:
    """Components started by a test; killed at its end whatever happened."""
    processes: list[ServiceProcess] = []
    yield processes
    for process in processes:
        await process.kill()


@contextlib.asynccontextmanager
async def service_env(tmp: Path, **extra: str) -> AsyncIterator[tuple[Settings, dict[str, str]]]:
    suffix = uuid.uuid4().hex[:8]
    settings = make_settings(
        tmp,
        database_url=f"postgresql+asyncpg://postgres@127.0.0.1:5432/ocr_gateway_test_{RUN_ID}_{suffix}",
        pages_queue=f"ocr.pages.test-{RUN_ID}-{suffix}",
        results_queue=f"ocr.results.test-{RUN_ID}-{suffix}",
    )
    await ensure_database(settings)
    await asyncio.to_thread(upgrade, settings)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OCR_GATEWAY_")},
        "OCR_GATEWAY_DATABASE_URL": settings.database_url,
        "OCR_GATEWAY_PAGES_QUEUE": settings.pages_queue,
        "OCR_GATEWAY_RESULTS_QUEUE": settings.results_queue,
        "OCR_GATEWAY_FILES_DIR": str(settings.files_dir),
        "OCR_GATEWAY_TEMP_DIR": str(settings.temp_dir),
        "OCR_GATEWAY_LOGS_DIR": str(settings.logs_dir),
        "OCR_GATEWAY_PORT": str(_free_port()),
        "OCR_GATEWAY_RENDER_LEASE_S": "2",
        "OCR_GATEWAY_DISPATCH_LEASE_S": "3",
        "OCR_GATEWAY_DISPATCH_POLL_S": "0.2",
        "OCR_GATEWAY_RUN_WORKERS": "0",
        "OCR_GATEWAY_QUEUE_HIGH_WATER": str(settings.queue_high_water),
        **extra,
    }
    try:
        yield settings, env
    finally:
        await delete_queues(settings)
        await drop_database(settings)


@contextlib.asynccontextmanager
async def served_with_pages(
    tmp_path: Path, spawned: list[ServiceProcess], *, jobs: int, pages: int, **extra: str
) -> AsyncIterator[tuple[Settings, SessionFactory, list[uuid.UUID], ServiceProcess]]:
    """`serve` running over a database seeded with rendered jobs."""
    async with service_env(tmp_path, **extra) as (settings, env):
        engine = build_engine(settings, pool_size=2)
        try:
            sessions = build_session_factory(engine)
            seeded = await seed_pages((Storage(settings), sessions), jobs=jobs, pages=pages)
            service = ServiceProcess(env, tmp_path / "service.log")
            spawned.append(service)
            await service.start()
            yield settings, sessions, seeded, service
        finally:
            await engine.dispose()


def logged_dispatcher_pids(settings: Settings) -> list[int]:
    """Pids of the dispatcher processes started so far, from the service's log files."""
    logged = "".join(p.read_text() for p in settings.logs_dir.glob("*.log"))
    return [
        int(line.rsplit("pid=", 1)[1].split()[0])
        for line in logged.splitlines()
        if "dispatcher started pid=" in line
    ]


async def test_killed_mid_render_resumes_from_temp_and_cleans_orphans(
    tmp_path: Path, spawned: list[ServiceProcess]
) -> None:
    async with service_env(tmp_path, OCR_GATEWAY_ORPHAN_TEMP_AGE_S="60") as (settings, env):
        settings.temp_dir.mkdir(parents=True, exist_ok=True)
        orphan = settings.temp_dir / f"{uuid.uuid4()}.upload"
        orphan.write_bytes(b"left by a crash")
        hour_ago = time.time() - 3600
        os.utime(orphan, (hour_ago, hour_ago))
        fresh = settings.temp_dir / f"{uuid.uuid4()}.upload"
        fresh.write_bytes(b"an upload being spooled right now")

        service = ServiceProcess(env, tmp_path / "service.log")
        spawned.append(service)
        await service.start()
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as http:
            data = sample("GeoTopo-komprimiert.pdf").read_bytes()
            accepted = (await http.post("/ocrpdf", files={"file": ("geo.pdf", data)})).json()
            job_id = accepted["job_id"]

            async def partly_rendered() -> bool:
                job = (await http.get(f"/admin/job/{job_id}")).json()
                return 8 <= job["rendered_pages"] < 100

            await wait_until(partly_rendered, interval=0.02)
            await service.kill()
            assert (settings.temp_dir / f"{job_id}.upload").exists(), "upload kept for resume"

            await service.start()

            async def finished() -> bool:
                job = (await http.get(f"/admin/job/{job_id}")).json()
                return bool(job["rendered_pages"] == 117)

            await wait_until(finished, timeout=90)
            job = (await http.get(f"/admin/job/{job_id}")).json()
            assert job["error"] is None
            assert [p["page_number"] for p in job["pages"]] == list(range(1, 118))
            pngs = sorted(int(p.stem) for p in (settings.files_dir / job_id).glob("*.png"))
            assert pngs == list(range(1, 118))
            assert not list((settings.files_dir / job_id).glob("*.part"))

            async def upload_removed() -> bool:
                return not (settings.temp_dir / f"{job_id}.upload").exists()

            await wait_until(upload_removed)
            assert not orphan.exists(), "orphaned upload removed"
            assert fresh.exists(), "a recent upload without a job is left alone"
        await service.kill()


async def test_killed_mid_publish_returns_leased_pages_and_finishes_after_restart(
    tmp_path: Path, channel: AbstractChannel, spawned: list[ServiceProcess]
) -> None:
    proxy = FaultProxy("127.0.0.1", 5672)
    await proxy.start()
    try:
        async with service_env(
            tmp_path,
            OCR_GATEWAY_RABBITMQ_URL=f"amqp://guest:guest@127.0.0.1:{proxy.port}/",
            OCR_GATEWAY_PUBLISH_TIMEOUT_S="60",
            OCR_GATEWAY_PUBLISHER_CONCURRENCY="16",
        ) as (settings, env):
            engine = build_engine(settings, pool_size=2)
            sessions = build_session_factory(engine)
            storage = Storage(settings)
            jobs = await seed_pages((storage, sessions), jobs=10, pages=200)
            total = 2000

            service = ServiceProcess(env, tmp_path / "service.log")
            spawned.append(service)
            await service.start()
            async with httpx.AsyncClient(base_url=service.url, timeout=30) as http:
                assert (await http.post("/admin/start")).status_code == 202

                async def some_queued() -> bool:
                    return await count_status(sessions, "queued") >= 100

                await wait_until(some_queued, interval=0.01)
                proxy.cut()  # confirms stop arriving: pages stay claimed, unconfirmed

                async def claimed() -> bool:
                    return await count_status(sessions, "publishing") > 0

                await wait_until(claimed)
                await service.kill()
                stranded = await count_status(sessions, "publishing")
                assert stranded > 0
                proxy.restore()

                await service.start()

                async def all_queued() -> bool:
                    return await count_status(sessions, "queued") == total

                await wait_until(all_queued, timeout=90)
            await service.kill()
            bodies = await drain(channel, settings.pages_queue)
            received = [(m["job_id"], m["page_number"]) for m in map(orjson.loads, bodies)]
            assert set(received) == {(str(j), n) for j in jobs for n in range(1, 201)}
            assert len(received) >= total
            await engine.dispose()
    finally:
        await proxy.close()


async def test_serve_publishes_from_its_own_dispatcher_process_which_stops_cleanly(
    tmp_path: Path, channel: AbstractChannel, spawned: list[ServiceProcess]
) -> None:
    """`serve` runs the dispatcher as a child process; a SIGTERM to `serve` stops it
    gracefully mid-publish: every page ends queued (its message in the queue) or pending."""
    async with served_with_pages(
        tmp_path, spawned, jobs=3, pages=100, OCR_GATEWAY_QUEUE_HIGH_WATER="50"
    ) as (settings, sessions, jobs, service):
        assert service.process is not None
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as http:
            assert (await http.post("/admin/start")).status_code == 202

            async def paused_at_the_mark() -> bool:
                return await count_status(sessions, "queued") >= 40

            await wait_until(paused_at_the_mark)
            assert (await http.get("/health")).json()["publishing"] is True

        started = logged_dispatcher_pids(settings)
        assert len(started) == 1
        dispatcher_pid = started[0]
        assert dispatcher_pid != service.process.pid
        os.kill(dispatcher_pid, 0)  # alive while `serve` runs

        os.kill(service.process.pid, signal.SIGTERM)
        assert await asyncio.wait_for(service.process.wait(), 60) == 0
        with pytest.raises(ProcessLookupError):
            os.kill(dispatcher_pid, 0)
        assert "dispatcher stopped" in "".join(
            p.read_text() for p in settings.logs_dir.glob("*.log")
        )

        queued = await count_status(sessions, "queued")
        pending = await count_status(sessions, "pending")
        assert await count_status(sessions, "publishing") == 0
        assert queued + pending == 300
        bodies = await drain(channel, settings.pages_queue)
        received = {(m["job_id"], m["page_number"]) for m in map(orjson.loads, bodies)}
        assert len(received) == len(bodies) == queued
        assert received <= {(str(j), n) for j in jobs for n in range(1, 101)}


async def test_ctrl_c_stops_serve_and_every_child_cleanly(
    tmp_path: Path, spawned: list[ServiceProcess]
) -> None:
    """A terminal's Ctrl-C sends SIGINT to the whole process group: the API, its dispatcher
    and its pool processes. Each stops in order, and nothing prints a traceback."""
    async with service_env(tmp_path) as (settings, env):
        output = tmp_path / "service.log"
        service = ServiceProcess(env, output)
        spawned.append(service)
        await service.start()
        assert service.process is not None

        async def dispatcher_running() -> bool:
            return bool(logged_dispatcher_pids(settings))

        await wait_until(dispatcher_running)
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as http:
            data = sample("GeoTopo-komprimiert.pdf").read_bytes()
            accepted = await http.post("/ocrpdf", files={"file": ("geo.pdf", data)})
            assert accepted.status_code == 202  # its pages render while the signal arrives

        os.killpg(service.process.pid, signal.SIGINT)
        assert await asyncio.wait_for(service.process.wait(), 60) == 0
        text_out = output.read_text()
        assert "dispatcher stopped" in text_out
        assert "Traceback" not in text_out, text_out[-3000:]
        group = service.process.pid

        async def group_gone() -> bool:
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                return True
            return False

        await wait_until(group_gone, timeout=10)  # pool processes and the resource tracker too


async def test_a_killed_dispatcher_is_replaced_and_publishing_goes_on(
    tmp_path: Path, channel: AbstractChannel, spawned: list[ServiceProcess]
) -> None:
    """`serve` starts another dispatcher when its dispatcher dies (SIGKILL, e.g. out of
    memory); the new one publishes a later start."""
    async with served_with_pages(tmp_path, spawned, jobs=2, pages=50) as (
        settings,
        sessions,
        jobs,
        service,
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

        async with httpx.AsyncClient(base_url=service.url, timeout=30) as http:
            assert (await http.post("/admin/start")).status_code == 202

            async def all_queued() -> bool:
                return await count_status(sessions, "queued") == 100

            await wait_until(all_queued, timeout=60)
        await service.kill()
        bodies = await drain(channel, settings.pages_queue)
        received = {(m["job_id"], m["page_number"]) for m in map(orjson.loads, bodies)}
        assert received == {(str(j), n) for j in jobs for n in range(1, 51)}
