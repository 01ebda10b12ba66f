"""Create the database if it is missing, then bring its schema to the newest Alembic revision."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import asyncpg
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

from ocr_gateway.core.settings import Settings

log = logging.getLogger(__name__)

SOURCE_ROOT = Path(__file__).resolve().parents[3]


def project_root() -> Path:
    """Where `alembic.ini` and `alembic/` are: the working directory (an installed package run
    from a deployment folder, as in the Docker image) or the source checkout."""
    cwd = Path.cwd()
    return cwd if (cwd / "alembic.ini").is_file() else SOURCE_ROOT


async def ensure_database(settings: Settings) -> bool:
    """Create the configured database through the `postgres` maintenance DB; True if created."""
    url = make_url(settings.sync_database_url)
    name = url.database
    if not name:
        raise ValueError("OCR_GATEWAY_DATABASE_URL names no database")
    admin_dsn = url.set(database="postgres").render_as_string(hide_password=False)
    connection = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        quoted = '"' + name.replace('"', '""') + '"'
        await connection.execute(f"CREATE DATABASE {quoted}")
        return True
    finally:
        await connection.close()


async def drop_database(settings: Settings) -> None:
    """Drop the configured database (tests' throw-away databases)."""
    url = make_url(settings.sync_database_url)
    admin_dsn = url.set(database="postgres").render_as_string(hide_password=False)
    connection = await asyncpg.connect(admin_dsn, timeout=10)
    try:
        quoted = '"' + str(url.database).replace('"', '""') + '"'
        await connection.execute(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
    finally:
        await connection.close()


def alembic_config(settings: Settings) -> Config:
    root = project_root()
    config = Config(str(root / "alembic.ini"))
    config.set_main_option("script_location", str(root / "alembic"))
    config.attributes["database_url"] = settings.database_url
    return config


def upgrade(settings: Settings) -> None:
    """Run the migrations (synchronous: Alembic drives its own event loop in env.py)."""
    command.upgrade(alembic_config(settings), "head")


def migrate(settings: Settings) -> None:
    if asyncio.run(ensure_database(settings)):
        log.info("database created")
    upgrade(settings)
