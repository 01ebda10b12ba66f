"""Engine and session factory, built in the app's lifespan (never at import time)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from ocr_gateway.core.settings import Settings

SessionFactory = async_sessionmaker[AsyncSession]


def build_engine(settings: Settings, pool_size: int = 10) -> AsyncEngine:
    """An asyncpg engine; `pool_pre_ping` lets the service recover by itself after a DB restart."""
    return create_async_engine(
        settings.database_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"timeout": 5, "command_timeout": 60},
    )


def build_session_factory(engine: AsyncEngine) -> SessionFactory:
    return async_sessionmaker(engine, expire_on_commit=False)


async def ping(session: AsyncSession) -> None:
    """A round trip to the database, for the health check."""
    await session.execute(text("SELECT 1"))
