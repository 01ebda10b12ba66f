"""`ocr-gateway run`, the launcher behind `make run`, as a test drives it: started over a
throw-away database and queues, its processes found through their environment, killed all at
once as a power cut would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from ocr_gateway.core.settings import Settings
from ocr_gateway.db.engine import SessionFactory, build_engine, build_session_factory
from ocr_gateway.db.migrate import drop_database, ensure_database, upgrade
from ocr_gateway.rendering.storage import Storage
from tests.support.gateway import RUN_ID, delete_queues, make_settings, seed_pages
from tests.support.net import free_port
from tests.support.waiting import wait_until

PROC = Path("/proc")


def processes_with_env(key: str, value: str) -> list[int]:
    """Pids of the live processes whose environment sets `key=value`: every process of one
    gateway (launcher, API, dispatcher, workers, their pools and resource trackers)."""
    wanted = f"{key}={value}".encode()
    found: list[int] = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if wanted not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if state not in ("Z", "X"):  # a zombie has exited; only its parent's wait is left
            found.append(int(entry.name))
    return found


class Gateway:
    """`python -m ocr_gateway run` in its own session, like `make run` in a terminal."""

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
                "run",
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

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def pids(self) -> list[int]:
        """Every live process of this gateway, the launcher included."""
        return processes_with_env("OCR_GATEWAY_DATABASE_URL", self.env["OCR_GATEWAY_DATABASE_URL"])

    async def kill(self) -> None:
        """SIGKILL every process of this gateway at once: the launcher is frozen first, so it
        neither starts another child nor lets the kernel's parent-death SIGTERM reach them."""
        if self.process is None or self.process.returncode is not None:
            return
        os.kill(self.process.pid, signal.SIGSTOP)
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await asyncio.wait_for(self.process.wait(), 10)
        await self.wait_gone()

    async def wait_gone(self, timeout: float = 10) -> None:
        async def no_process_left() -> bool:
            return not self.pids()

        await wait_until(no_process_left, timeout=timeout)


async def count_status(sessions: SessionFactory, status: str) -> int:
    async with sessions() as session:
        value = await session.scalar(
            text("SELECT count(*) FROM pages WHERE status = :s"), {"s": status}
        )
    return int(value or 0)


@pytest.fixture
async def spawned() -> AsyncIterator[list[Gateway]]:
    """Gateways started by a test; killed at its end whatever happened."""
    gateways: list[Gateway] = []
    yield gateways
    for gateway in gateways:
        await gateway.kill()


def storage_env(settings: Settings) -> dict[str, str]:
    """The storage settings as `OCR_GATEWAY_*` variables (the bucket and keys on s3)."""
    if settings.storage != "s3":
        return {"OCR_GATEWAY_STORAGE": "local"}
    key_id, secret = settings.s3_access_key_id, settings.s3_secret_access_key
    return {
        "OCR_GATEWAY_STORAGE": "s3",
        "OCR_GATEWAY_S3_ENDPOINT_URL": settings.s3_endpoint_url or "",
        "OCR_GATEWAY_S3_BUCKET": settings.s3_bucket,
        "OCR_GATEWAY_S3_REGION": settings.s3_region,
        "OCR_GATEWAY_S3_ACCESS_KEY_ID": key_id.get_secret_value() if key_id else "",
        "OCR_GATEWAY_S3_SECRET_ACCESS_KEY": secret.get_secret_value() if secret else "",
        "OCR_GATEWAY_S3_PREFIX": settings.s3_prefix,
    }


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
        "OCR_GATEWAY_PORT": str(free_port()),
        "OCR_GATEWAY_RENDER_LEASE_S": "2",
        "OCR_GATEWAY_DISPATCH_LEASE_S": "3",
        "OCR_GATEWAY_DISPATCH_POLL_S": "0.2",
        "OCR_GATEWAY_RUN_WORKERS": "0",
        "OCR_GATEWAY_QUEUE_HIGH_WATER": str(settings.queue_high_water),
        **storage_env(settings),
        **extra,
    }
    try:
        yield settings, env
    finally:
        await delete_queues(settings)
        await drop_database(settings)


@contextlib.asynccontextmanager
async def served_with_pages(
    tmp_path: Path, spawned: list[Gateway], *, jobs: int, pages: int, **extra: str
) -> AsyncIterator[tuple[Settings, SessionFactory, list[uuid.UUID], Gateway]]:
    """`ocr-gateway run` over a database seeded with rendered jobs."""
    async with service_env(tmp_path, **extra) as (settings, env):
        engine = build_engine(settings, pool_size=2)
        try:
            sessions = build_session_factory(engine)
            seeded = await seed_pages((Storage(settings), sessions), jobs=jobs, pages=pages)
            gateway = Gateway(env, tmp_path / "gateway.log")
            spawned.append(gateway)
            await gateway.start()
            yield settings, sessions, seeded, gateway
        finally:
            await engine.dispose()


def logged_dispatcher_pids(settings: Settings) -> list[int]:
    """Pids of the dispatcher processes started so far, from the gateway's log files."""
    logged = "".join(p.read_text() for p in settings.logs_dir.glob("*.log"))
    return [
        int(line.rsplit("pid=", 1)[1].split()[0])
        for line in logged.splitlines()
        if "dispatcher started pid=" in line
    ]
