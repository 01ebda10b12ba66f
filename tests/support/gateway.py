"""A gateway on a throw-away database and uniquely named queues: settings, set-up, clean-up."""

from __future__ import annotations

import asyncio
import contextlib
import io
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import httpx
from aio_pika.abc import AbstractChannel
from fastapi import FastAPI
from sqlalchemy import text

from ocr_gateway.app import create_app
from ocr_gateway.components import Components
from ocr_gateway.core.settings import Settings
from ocr_gateway.db.engine import SessionFactory
from ocr_gateway.db.migrate import drop_database, ensure_database, upgrade
from ocr_gateway.messaging.amqp import dead_letter_queue
from ocr_gateway.rendering.storage import Storage
from ocr_gateway.storage import ArtefactStore, open_store
from ocr_gateway.storage.keys import page_key
from tests.support.s3 import new_bucket_name, shared_s3_server, storage_mode

RUN_ID = uuid.uuid4().hex[:10]


def make_settings(tmp: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": f"postgresql+asyncpg://postgres@127.0.0.1:5432/ocr_gateway_test_{RUN_ID}",
        "pages_queue": f"ocr.pages.test-{RUN_ID}",
        "results_queue": f"ocr.results.test-{RUN_ID}",
        "files_dir": tmp / "files",
        "temp_dir": tmp / "temp",
        "logs_dir": tmp / "logs",
        "render_workers": 2,
        "dispatch_poll_s": 0.2,
        "publish_timeout_s": 5.0,
        "max_upload_bytes": 8 * 1024 * 1024,
        "max_pages": 200,
        "orphan_temp_age_s": 3600.0,
        "queue_high_water": 5000,
        "_env_file": None,
    }
    if storage_mode() == "s3" and "storage" not in overrides:
        # OCR_GATEWAY_STORAGE=s3: this gateway's artefacts go to a bucket of its own on the
        # run's S3 server (tests/support/s3.py), which starts at its first use.
        values.update(shared_s3_server().settings(new_bucket_name("gateway")))
    values.update(overrides)
    return Settings(**values)


async def purge_queues(settings: Settings) -> None:
    connection = await aio_pika.connect(settings.rabbitmq_url.get_secret_value())
    async with connection:
        ch = await connection.channel()
        for name in (settings.pages_queue, settings.results_queue):
            for queue_name in (name, dead_letter_queue(name)):
                queue = await ch.declare_queue(queue_name, passive=True)
                await queue.purge()


async def delete_queues(settings: Settings) -> None:
    connection = await aio_pika.connect(settings.rabbitmq_url.get_secret_value())
    async with connection:
        ch = await connection.channel()
        for name in (settings.pages_queue, settings.results_queue):
            for queue in (name, dead_letter_queue(name)):
                await ch.queue_delete(queue)


async def drain(channel: AbstractChannel, queue_name: str, idle: float = 1.0) -> list[bytes]:
    """Consume and ack every message until the queue stays empty for `idle` seconds."""
    queue = await channel.declare_queue(queue_name, passive=True)
    bodies: list[bytes] = []
    quiet_since = asyncio.get_running_loop().time()
    while asyncio.get_running_loop().time() - quiet_since < idle:
        message = await queue.get(no_ack=False, fail=False)
        if message is None:
            await asyncio.sleep(0.05)
            continue
        bodies.append(message.body)
        await message.ack()
        quiet_since = asyncio.get_running_loop().time()
    return bodies


class Gateway:
    """A whole app on its own database and queues, for tests that break things."""

    def __init__(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        self.app = app
        self.client = client
        self.services: Components = app.state.components
        self.settings = self.services.settings


@contextlib.asynccontextmanager
async def isolated_gateway(
    tmp: Path, *, db_port: int = 5432, amqp_port: int = 5672, **overrides: Any
) -> AsyncIterator[Gateway]:
    """Create a fresh database and queues, run the app's lifespan, then remove it all.

    `db_port` and `amqp_port` let the app reach PostgreSQL or RabbitMQ through a FaultProxy;
    set-up and clean-up always go direct.
    """
    suffix = uuid.uuid4().hex[:8]
    db_name = f"ocr_gateway_test_{RUN_ID}_{suffix}"
    queues = {
        "pages_queue": f"ocr.pages.test-{RUN_ID}-{suffix}",
        "results_queue": f"ocr.results.test-{RUN_ID}-{suffix}",
    }
    direct = make_settings(
        tmp, database_url=f"postgresql+asyncpg://postgres@127.0.0.1:5432/{db_name}", **queues
    )
    values: dict[str, Any] = {
        "database_url": f"postgresql+asyncpg://postgres@127.0.0.1:{db_port}/{db_name}",
        "rabbitmq_url": f"amqp://guest:guest@127.0.0.1:{amqp_port}/",
        **queues,
    }
    values.update(overrides)
    settings = make_settings(tmp, **values)
    await ensure_database(direct)
    await asyncio.to_thread(upgrade, direct)
    application = create_app(settings)
    try:
        async with application.router.lifespan_context(application):
            transport = httpx.ASGITransport(app=application)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://gateway/api/v1", timeout=30
            ) as http:
                yield Gateway(application, http)
    finally:
        await delete_queues(direct)
        await drop_database(direct)


async def seed_pages(
    target: Gateway | tuple[Storage, SessionFactory],
    jobs: int,
    pages: int,
    *,
    tenant: str = "default",
) -> list[uuid.UUID]:
    """Insert rendered jobs of `tenant` directly (one tiny PNG copied per page): for dispatch
    tests where rendering is not the point and thousands of pages are needed quickly."""
    from PIL import Image

    if isinstance(target, Gateway):
        storage, sessions = target.services.storage, target.services.sessions
    else:
        storage, sessions = target
    buffer = io.BytesIO()
    Image.new("L", (64, 64), 255).save(buffer, format="PNG")
    png = buffer.getvalue()
    ids = []
    async with opened_store(storage.settings) as store:
        for _ in range(jobs):
            job_id = uuid.uuid4()
            await put_all(store, {page_key(job_id, n): png for n in range(1, pages + 1)})
            await _record_seeded(sessions, job_id, tenant, pages)
            ids.append(job_id)
    return ids


async def _record_seeded(
    sessions: SessionFactory, job_id: uuid.UUID, tenant: str, pages: int
) -> None:
    from ocr_gateway.jobs import repository as jobs_repo
    from ocr_gateway.rendering import repository as repo
    from ocr_gateway.tenants import repository as tenants_repo

    async with sessions.begin() as session:
        await tenants_repo.ensure_tenant(session, tenant)
        await jobs_repo.create_job(
            session,
            job_id=job_id,
            tenant=tenant,
            filename="seeded.pdf",
            media_type="application/pdf",
            total_page_number=pages,
            render_lease_s=60,
        )
        await repo.record_rendered_pages(
            session,
            job_id,
            [(n, page_key(job_id, n)) for n in range(1, pages + 1)],
            render_lease_s=60,
        )
        await repo.finish_render(session, job_id)


@contextlib.asynccontextmanager
async def opened_store(settings: Settings) -> AsyncIterator[ArtefactStore]:
    """The artefact store of a gateway with these settings, prepared, closed at exit."""
    store = open_store(settings)
    await store.prepare()
    try:
        yield store
    finally:
        await store.close()


async def put_all(store: ArtefactStore, objects: dict[str, bytes], concurrency: int = 32) -> None:
    """Store many small objects at once (thousands of seeded pages on S3 take seconds)."""
    limit = asyncio.Semaphore(concurrency)

    async def put(key: str, data: bytes) -> None:
        async with limit:
            await store.put_bytes(key, data, content_type="image/png")

    await asyncio.gather(*(put(key, data) for key, data in objects.items()))


async def page_counts(services: Components) -> dict[str, int]:
    async with services.sessions() as session:
        rows = (
            await session.execute(text("SELECT status, count(*) FROM pages GROUP BY status"))
        ).all()
    return {str(row[0]): int(row[1]) for row in rows}
