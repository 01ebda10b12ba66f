"""Migration 0014: page rows written with an absolute PNG path hold the page's storage key."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from alembic import command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from ocr_gateway.db.migrate import alembic_config, drop_database, ensure_database
from ocr_gateway.storage.keys import page_key
from tests.support.gateway import RUN_ID, make_settings


async def test_0014_rewrites_page_paths_to_keys(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        database_url="postgresql+asyncpg://postgres@127.0.0.1:5432/"
        f"ocr_gateway_test_{RUN_ID}_keys_{uuid.uuid4().hex[:6]}",
    )
    await ensure_database(settings)
    engine = create_async_engine(settings.database_url)
    try:
        config = alembic_config(settings)
        await asyncio.to_thread(command.upgrade, config, "0013")
        job_id = uuid.uuid4()
        old = f"/srv/gateway/files/{job_id}/3.png"
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO jobs (job_id, filename, media_type, total_page_number, status)"
                    " VALUES (:j, 'a.pdf', 'application/pdf', 3, 'pending')"
                ),
                {"j": job_id},
            )
            await connection.execute(
                text(
                    "INSERT INTO pages (job_id, page_number, path, status)"
                    " VALUES (:j, 3, :p, 'pending')"
                ),
                {"j": job_id, "p": old},
            )
        await asyncio.to_thread(command.upgrade, config, "0014")
        async with engine.connect() as connection:
            stored = await connection.scalar(text("SELECT path FROM pages"))
        assert stored == page_key(job_id, 3) == f"{job_id}/3.png"
    finally:
        await engine.dispose()
        await drop_database(settings)
