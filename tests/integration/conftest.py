"""Fixtures: a throw-away database and unique queues per run, the real app in-process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from ocr_gateway.app import create_app
from ocr_gateway.components import Components
from ocr_gateway.core.settings import Settings
from ocr_gateway.db.migrate import drop_database, ensure_database, upgrade
from ocr_gateway.storage.cleanup import delete_all_job_artefacts
from tests.support.gateway import delete_queues, make_settings, purge_queues
from tests.support.launched import spawned  # noqa: F401  (a fixture)
from tests.support.s3 import S3Server, new_bucket_name, shared_s3_server


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(tmp_path_factory.mktemp("gateway"))


@pytest.fixture(scope="session")
async def s3_server() -> S3Server:
    """A real S3-compatible server (SeaweedFS `weed mini`, tests/support/s3.py) for the whole
    run: `.endpoint_url`, `.access_key_id`, `.secret_access_key`, `.region`; `.settings(bucket)`
    gives the gateway's `Settings` fields for a bucket on it, `.env(bucket)` the same as
    `OCR_GATEWAY_*` variables, `.client()` a sync botocore client for checks, and `.stop()` /
    `.start()` an outage (objects stay on disk across it). With `OCR_GATEWAY_STORAGE=s3` the
    session's gateway (`settings`) stores its artefacts on this same server."""
    return await asyncio.to_thread(shared_s3_server)


@pytest.fixture
async def s3_bucket(s3_server: S3Server) -> AsyncIterator[str]:
    """A throw-away bucket for one test, created empty and removed with its objects after."""
    name = new_bucket_name()
    client = s3_server.client()
    await asyncio.to_thread(client.create_bucket, Bucket=name)
    yield name
    if s3_server.running:  # a test that stopped the server has left it stopped
        await asyncio.to_thread(_remove_bucket, client, name)


def _remove_bucket(client: Any, name: str) -> None:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=name, Key=item["Key"])
    client.delete_bucket(Bucket=name)


@pytest.fixture
def s3_settings(s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> Settings:
    """Settings of a gateway that stores its artefacts in `s3_bucket` (its own temp folder and
    files folder under `tmp_path`, the session's database and queues)."""
    return make_settings(tmp_path, **s3_server.settings(s3_bucket))


@pytest.fixture(scope="session")
async def database(settings: Settings) -> AsyncIterator[Settings]:
    await ensure_database(settings)
    await asyncio.to_thread(upgrade, settings)
    yield settings
    await drop_database(settings)


@pytest.fixture(scope="session")
async def app(database: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(database)
    async with application.router.lifespan_context(application):
        yield application
    await delete_queues(database)


@pytest.fixture(scope="session")
def services(app: FastAPI) -> Components:
    services: Components = app.state.components
    return services


@pytest.fixture(scope="session")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://gateway/api/v1", timeout=30
    ) as http:
        yield http


@pytest.fixture(scope="session")
async def amqp(database: Settings) -> AsyncIterator[AbstractRobustConnection]:
    connection = await aio_pika.connect_robust(database.rabbitmq_url.get_secret_value())
    yield connection
    await connection.close()


@pytest.fixture
async def channel(amqp: AbstractRobustConnection) -> AsyncIterator[AbstractChannel]:
    ch = await amqp.channel()
    yield ch
    await ch.close()


@pytest.fixture(autouse=True)
async def clean_state(services: Components) -> AsyncIterator[None]:
    """Each test leaves no jobs, no starts, no files and empty queues behind it."""
    yield
    await services.control.stop()
    await services.control.set_rate(None)  # a rate a test set (or the fuzzer's) is lifted
    assert services.dispatcher is not None, "the test app publishes in-process"
    await services.dispatcher.halt()
    for job_id in services.renderer.rendering_job_ids:
        await services.renderer.cancel_render(job_id)
    await _truncate(services)
    await delete_all_job_artefacts(services.store)
    # A render cancelled above keeps its upload for a resume; its job is gone with the TRUNCATE.
    await services.storage.remove_orphan_uploads(set(), 0)
    await purge_queues(services.settings)


TRUNCATE_TRIES = 5


async def _truncate(services: Components) -> None:
    """Empty the tables. A dispatcher still recording a confirm (pages, then jobs) can deadlock
    with the TRUNCATE's locks; PostgreSQL then cancels one side, and this tries again."""
    for attempt in range(1, TRUNCATE_TRIES + 1):
        try:
            async with services.sessions.begin() as session:
                await session.execute(
                    text(
                        "TRUNCATE jobs, pages, dispatch_requests, job_events,"
                        " webhook_deliveries, api_keys, images CASCADE"
                    )
                )
                await session.execute(text("DELETE FROM tenants WHERE name <> 'default'"))
                await session.execute(
                    text(
                        "UPDATE tenants SET weight = 1, max_pending_pages = NULL,"
                        " uploads_per_minute = NULL, max_stored_bytes = NULL,"
                        " callback_url = NULL, callback_events = 'job'"
                    )
                )
            return
        except DBAPIError as exc:
            if "deadlock" not in str(exc) or attempt == TRUNCATE_TRIES:
                raise
            await asyncio.sleep(0.1 * attempt)
